//! Verifying an export alone, line by line, with only the public keys: each
//! event's hash and seal, the links between the events of a stream, and (in
//! an export of the whole log) the signed checkpoints. Memory holds the
//! checkpoints and the last event of each stream seen, not the events.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use infra::event_log::LogPosition;
use infra::integrity::{Checkpoint, HashedEventRef, Json, PublicKeys};
use serde::Deserialize;
use serde_json::{Map, Value};

use bus::metadata_keys::OCCURRED_AT;

use super::check::{match_trusted, RunningFold, SealedRecord};
use super::markers::{erased_values, ErasedValue, Erasures};
use super::report::{Broken, Reason, VerifyReport};

/// Why the verifier stopped reading: the export cannot be read further.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ExportLineError {
    pub line: u64,
    pub reason: String,
}

/// One line of an export, by its only top-level key (events have many).
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Header { export: ExportHeaderLine },
    Checkpoint { checkpoint: Checkpoint },
    End { end: EndLine },
    Event(Box<ExportedEvent>),
}

#[derive(Deserialize)]
struct ExportHeaderLine {
    filters: Map<String, Value>,
}

#[derive(Deserialize)]
struct EndLine {
    events: u64,
}

#[derive(Deserialize)]
struct ExportedEvent {
    event_id: String,
    event_type: String,
    event_version: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    global_position: i64,
    recorded_at: DateTime<Utc>,
    payload: Value,
    metadata: Map<String, Value>,
    integrity: ExportedIntegrity,
}

#[derive(Deserialize)]
struct ExportedIntegrity {
    /// Absent from exports of format 1, whose events all had version 1.
    #[serde(default = "version_1")]
    hash_version: i16,
    transaction_id: i64,
    prev_hash: String,
    hash: String,
    sealed: String,
    salts: Value,
    /// The metadata exactly as stored (the item's `metadata` is a typed view of it).
    stored_metadata: Map<String, Value>,
}

pub struct ExportVerifier {
    report: VerifyReport,
    fold: RunningFold,
    keys: PublicKeys,
    /// The export's checkpoint lines, and the trusted ones to find among them.
    checkpoints: Vec<Checkpoint>,
    trusted: Vec<Checkpoint>,
    /// Erased values wait for the end: their `user.erased` comes later.
    erasures: Erasures,
    erased: Vec<ErasedValue>,
    /// Whether the export holds the whole log (then checkpoints can be checked).
    whole_log: Option<bool>,
    streams: HashMap<(String, String), (i64, String)>,
    line: u64,
    ended: Option<u64>,
}

impl ExportVerifier {
    /// A verifier trusting `keys`; each of `trusted` (checkpoints held
    /// outside the database) must be among the export's, unchanged.
    pub fn new(keys: PublicKeys, trusted: Vec<Checkpoint>) -> Self {
        Self {
            report: VerifyReport::default(),
            fold: RunningFold::new([], keys.clone()),
            keys,
            checkpoints: Vec::new(),
            trusted,
            erasures: Erasures::default(),
            erased: Vec::new(),
            whole_log: None,
            streams: HashMap::new(),
            line: 0,
            ended: None,
        }
    }

    /// Checks the next line; an error when the export cannot be read on.
    pub fn feed(&mut self, line: &str) -> Result<(), ExportLineError> {
        self.line += 1;
        if self.ended.is_some() {
            return Err(self.unreadable("a line after the end line"));
        }
        let parsed: Line =
            serde_json::from_str(line).map_err(|error| self.unreadable(&error.to_string()))?;
        match (parsed, self.whole_log) {
            (Line::Header { export }, None) => {
                self.whole_log = Some(export.filters.is_empty());
                self.report.filtered = !export.filters.is_empty();
                Ok(())
            }
            (_, None) => Err(self.unreadable("the first line is not the export's header")),
            (Line::Header { .. }, Some(_)) => Err(self.unreadable("a second header")),
            (Line::Checkpoint { checkpoint }, Some(_)) if self.report.events_checked == 0 => {
                self.checkpoints.push(checkpoint.clone());
                self.fold.push_checkpoint(checkpoint);
                Ok(())
            }
            (Line::Checkpoint { .. }, Some(_)) => {
                Err(self.unreadable("a checkpoint after the events"))
            }
            (Line::End { end }, Some(_)) => {
                self.ended = Some(end.events);
                Ok(())
            }
            (Line::Event(event), Some(whole_log)) => {
                self.event(*event, whole_log);
                Ok(())
            }
        }
    }

    /// The verdict once every line was fed.
    pub fn finish(mut self) -> VerifyReport {
        match self.ended {
            None => self
                .report
                .broken(malformed("the export has no end line: it was cut short")),
            Some(events) if events != self.report.events_checked => self
                .report
                .broken(malformed("the end line counts another number of events")),
            Some(_) => {}
        }
        let whole_log = self.whole_log == Some(true);
        if whole_log {
            if let Err(broken) = self.fold.finish() {
                self.report.broken(broken);
            }
        }
        match match_trusted(&self.trusted, &self.checkpoints, &self.keys) {
            Ok(matched) => self.report.trusted_checkpoints_matched = matched,
            Err(broken) => self.report.broken(broken),
        }
        for value in std::mem::take(&mut self.erased) {
            if self.erasures.covers(&value) {
                continue;
            }
            if whole_log {
                self.report.broken(value.broken);
            } else {
                self.report.erasure_markers_unconfirmed += 1;
            }
        }
        self.report.checkpoints_checked = self.fold.checkpoints_checked;
        self.report.proven(self.fold.proven());
        self.report.finish()
    }

    fn event(&mut self, event: ExportedEvent, whole_log: bool) {
        self.report.events_checked += 1;
        if self.report.first_broken.is_some() {
            return;
        }
        let shown_metadata_agrees =
            shown_metadata_agrees(&event.metadata, &event.integrity.stored_metadata);
        let record = SealedRecord {
            event: HashedEventRef {
                hash_version: event.integrity.hash_version,
                event_id: &event.event_id,
                aggregate_type: &event.aggregate_type,
                aggregate_id: &event.aggregate_id,
                sequence: event.sequence,
                event_type: &event.event_type,
                event_version: &event.event_version,
                sealed: &event.integrity.sealed,
                recorded_at: event.recorded_at,
                prev_hash: &event.integrity.prev_hash,
                hash: &event.integrity.hash,
            },
            position: LogPosition {
                transaction_id: event.integrity.transaction_id,
                global_position: event.global_position,
            },
            visible: Json::payload_and_metadata(
                Json::from_value(&event.payload),
                Json::from_map(&event.integrity.stored_metadata),
            ),
            salts: Json::from_value(&event.integrity.salts),
        };
        let stream = (
            record.event.aggregate_type.to_owned(),
            record.event.aggregate_id.to_owned(),
        );
        let previous = self
            .streams
            .get(&stream)
            .map(|(sequence, hash)| (*sequence, hash.as_str()));
        self.erasures.learn(&record);
        let mut result = record
            .check()
            .and_then(|withheld| erased_values(&record, withheld, true))
            .map(|erased| self.erased.extend(erased));
        if result.is_ok() && !shown_metadata_agrees {
            result = Err(Broken {
                detail: Some("the metadata shown is not the metadata stored".to_owned()),
                ..malformed_at(&record)
            });
        }
        // A filtered export may leave out any of a stream's events: a link
        // is checked only between events it shows next to each other.
        let gap_left_by_filter =
            !whole_log && previous.is_none_or(|(sequence, _)| record.event.sequence > sequence + 1);
        if result.is_ok() && !gap_left_by_filter {
            result = record.check_link(previous);
        }
        if result.is_ok() && whole_log {
            result = self.fold.fold(record.position, record.event.hash);
        }
        if let Err(broken) = result {
            self.report.broken(broken);
        }
        self.streams.insert(
            stream,
            (record.event.sequence, record.event.hash.to_owned()),
        );
    }

    fn unreadable(&self, reason: &str) -> ExportLineError {
        ExportLineError {
            line: self.line,
            reason: reason.to_owned(),
        }
    }
}

/// Each metadata value shown is the stored one (times compared as times);
/// keys not stored are shown empty.
fn shown_metadata_agrees(shown: &Map<String, Value>, stored: &Map<String, Value>) -> bool {
    let same_time = |a: &str, b: &str| matches!((DateTime::parse_from_rfc3339(a), DateTime::parse_from_rfc3339(b)), (Ok(a), Ok(b)) if a == b);
    shown
        .iter()
        .all(|(key, shown)| match (shown, stored.get(key)) {
            (Value::Null, None) => true,
            (Value::String(shown), Some(Value::String(stored))) => {
                shown == stored || (key == OCCURRED_AT && same_time(shown, stored))
            }
            _ => false,
        })
        && stored.keys().all(|key| shown.contains_key(key))
}

fn version_1() -> i16 {
    1
}

fn malformed(detail: &str) -> Broken {
    Broken {
        aggregate_type: None,
        aggregate_id: None,
        sequence: None,
        global_position: None,
        expected: None,
        found: None,
        reason: Reason::MalformedLine,
        detail: Some(detail.to_owned()),
    }
}

fn malformed_at(record: &SealedRecord<'_>) -> Broken {
    Broken {
        aggregate_type: Some(record.event.aggregate_type.to_owned()),
        aggregate_id: Some(record.event.aggregate_id.to_owned()),
        sequence: Some(record.event.sequence),
        global_position: Some(record.position.global_position),
        ..malformed("")
    }
}
