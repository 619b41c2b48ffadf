//! `/v1/audit`: what auditors read, all of it behind `audit:read`. The list
//! reads the `audit_log` read model; a stream's history, an aggregate's
//! state and the export read the event store.

pub mod aggregate;
pub mod events;
pub mod export;
pub mod integrity;
pub mod item;

use std::collections::BTreeMap;

use actix_web::web;
use app::audit::{AuditFilter, FilterParams};
use app::AppError;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::problem::{ApiError, FieldError};

/// A route's handler, made fresh for each resource.
type RouteOf = fn() -> actix_web::Route;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let routes: [(&str, &[RouteOf]); 6] = [
        ("/audit/events", &[|| web::get().to(events::list)]),
        ("/audit/export", &[|| web::get().to(export::export)]),
        (
            "/audit/verify",
            &[
                || web::get().to(integrity::verify),
                || web::post().to(integrity::request_verification),
            ],
        ),
        ("/audit/keys", &[|| web::get().to(integrity::keys)]),
        (
            "/audit/{aggregate_type}/{id}/history",
            &[|| web::get().to(aggregate::history)],
        ),
        (
            "/audit/{aggregate_type}/{id}/state",
            &[|| web::get().to(aggregate::state)],
        ),
    ];
    for (path, routes) in routes {
        let resource = routes.iter().fold(web::resource(path), |resource, route| {
            resource.route(route())
        });
        cfg.service(resource.default_service(web::to(super::method_not_allowed)));
    }
}

/// What the list and the export select events by; all optional, combined
/// with AND. The same parameters on the command line (`api audit export`).
#[derive(Deserialize, IntoParams, clap::Args, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// An aggregate type of the event contract.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(domain::aggregate_types()))]
    #[param(value_type = Option<crate::closed_sets::AggregateTypeName>, inline)]
    aggregate_type: Option<String>,
    #[arg(long)]
    aggregate_id: Option<String>,
    /// A full event type (`user.email_changed`) or a prefix ending in `.` (`user.`).
    #[arg(long)]
    event_type: Option<String>,
    /// Who caused the event (`metadata.actor_id`).
    #[arg(long)]
    #[param(value_type = Option<uuid::Uuid>)]
    actor_id: Option<String>,
    /// The API key a machine client acted with (`metadata.api_key_id`).
    #[arg(long)]
    api_key_id: Option<String>,
    /// The request the event was part of (`metadata.correlation_id`).
    #[arg(long)]
    correlation_id: Option<String>,
    /// RFC 3339: events recorded at or after it.
    #[arg(long)]
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    from: Option<String>,
    /// RFC 3339: events recorded at or before it.
    #[arg(long)]
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    to: Option<String>,
}

impl FilterQuery {
    pub fn parse(self) -> Result<AuditFilter, AppError> {
        AuditFilter::parse(&FilterParams {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            event_type: self.event_type,
            actor_id: self.actor_id,
            api_key_id: self.api_key_id,
            correlation_id: self.correlation_id,
            from: self.from,
            to: self.to,
        })
    }
}

/// A query's parameters that no field took (`#[serde(flatten)]` cannot be
/// combined with `deny_unknown_fields`): the first is refused by name.
fn refuse_unknown(unknown: &BTreeMap<String, String>) -> Result<(), ApiError> {
    match unknown.keys().next() {
        Some(name) => Err(ApiError::BadRequest(vec![FieldError::new(
            name,
            "is not a parameter of this route",
        )])),
        None => Ok(()),
    }
}
