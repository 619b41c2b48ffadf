//! `GET /v1/audit/export`: the log as NDJSON, streamed with chunked
//! transfer one page of the event store at a time. The first line
//! describes the export; an export of the whole log then lists the signed
//! checkpoints; then one line per event (with what proves it); the last line
//! says how many events it holds (a file without it was cut short).

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use app::audit::{AuditExport, AuditQueries, EventIntegrity, ExportHeader, ExportedEvent};
use app::AppError;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::item::AuditEvent;
use super::{refuse_unknown, FilterQuery};
use crate::auth::principal::AuditRead;
use crate::auth::Allowed;
use crate::extract::ValidQuery;
use crate::problem::{ApiError, Problem, PROBLEM};

pub const NDJSON: &str = "application/x-ndjson";

#[derive(Deserialize)]
pub struct ExportQuery {
    #[serde(flatten)]
    filters: FilterQuery,
    #[serde(flatten)]
    unknown: BTreeMap<String, String>,
}

/// The first line.
#[derive(Serialize)]
struct HeaderLine<'a> {
    export: &'a ExportHeader,
}

/// A line after the header for each signed checkpoint an export of the whole log covers.
#[derive(Serialize)]
struct CheckpointLine<'a> {
    checkpoint: &'a infra::integrity::Checkpoint,
}

/// An event line: the list's item, and what proves it.
#[derive(Serialize)]
struct EventLine {
    #[serde(flatten)]
    event: AuditEvent,
    integrity: EventIntegrity,
}

/// The last line.
#[derive(Serialize)]
struct EndLine {
    end: ExportEnd,
}

#[derive(Serialize)]
struct ExportEnd {
    events: u64,
}

/// The NDJSON of an export, line by line.
pub struct NdjsonExport {
    export: AuditExport,
    events: u64,
    state: State,
}

enum State {
    Header,
    Checkpoints,
    Events,
    End,
    Done,
}

impl NdjsonExport {
    pub fn new(export: AuditExport) -> Self {
        Self {
            export,
            events: 0,
            state: State::Header,
        }
    }

    pub fn header(&self) -> &ExportHeader {
        self.export.header()
    }

    pub fn export(&self) -> &AuditExport {
        &self.export
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The next lines: the header, then a page of events at a time, then
    /// the end line; `None` after that.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, AppError> {
        match self.state {
            State::Header => {
                self.state = State::Checkpoints;
                Ok(Some(line(&HeaderLine {
                    export: self.export.header(),
                })))
            }
            State::Checkpoints => {
                self.state = State::Events;
                let mut lines = Vec::new();
                for checkpoint in self.export.checkpoints().await? {
                    lines.extend(line(&CheckpointLine {
                        checkpoint: &checkpoint,
                    }));
                }
                Ok(Some(lines))
            }
            State::Events => match self.export.next_page().await? {
                Some(page) => {
                    self.events += page.len() as u64;
                    Ok(Some(event_lines(page)))
                }
                None => {
                    self.state = State::End;
                    Box::pin(self.next_chunk()).await
                }
            },
            State::End => {
                self.state = State::Done;
                Ok(Some(line(&EndLine {
                    end: ExportEnd {
                        events: self.events,
                    },
                })))
            }
            State::Done => Ok(None),
        }
    }
}

fn event_lines(page: Vec<ExportedEvent>) -> Vec<u8> {
    let mut lines = Vec::new();
    for exported in page {
        lines.extend(line(&EventLine {
            event: AuditEvent::from(exported.event),
            integrity: exported.integrity,
        }));
    }
    lines
}

fn line(value: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).expect("export lines always serialize");
    line.push(b'\n');
    line
}

#[utoipa::path(
    get,
    path = "/v1/audit/export",
    tag = "audit",
    security(("bearer" = [])),
    params(FilterQuery),
    responses(
        (status = 200, content_type = "application/x-ndjson",
         description = "NDJSON, chunked: `{\"export\": {format, generated_at, newest_global_position, newest_transaction_id, filters}}`, \
                        then one event per line (the shape of /v1/audit/events items) in publishing order, \
                        then `{\"end\": {\"events\": N}}`. Read from the event store up to the newest event committed when it began."),
        (status = 400, description = "A malformed filter, or `from` after `to`", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs audit:read", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn export(
    pool: web::Data<PgPool>,
    _: Allowed<AuditRead>,
    ValidQuery(query): ValidQuery<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    refuse_unknown(&query.unknown)?;
    let filter = query.filters.parse()?;
    let export = AuditQueries::new(pool.get_ref().clone())
        .export(filter)
        .await?;
    let body = futures_util::stream::try_unfold(NdjsonExport::new(export), |mut ndjson| async {
        match ndjson.next_chunk().await {
            Ok(Some(chunk)) => Ok(Some((Bytes::from(chunk), ndjson))),
            Ok(None) => Ok(None),
            Err(error) => {
                // The status is sent: the client sees a body without its end line.
                tracing::error!(error = %error, events = ndjson.events(), "the export failed");
                Err(error)
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(NDJSON)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"audit-export.ndjson\"",
        ))
        .streaming(body))
}
