//! What auditors select events by, checked against the event contract: the
//! same rules for the list, the export endpoint and the export command.

use chrono::{DateTime, Utc};
use domain::all_event_types;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::AppError;

/// The most events one page of the list holds.
pub const MAX_PAGE: i64 = 1000;
/// Events on a page when the request does not say.
pub const DEFAULT_PAGE: i64 = 100;
/// Longest id an auditor can filter by; longer ones name nothing.
const MAX_ID_CHARS: usize = 200;

/// The filters as the caller wrote them; every one is optional.
#[derive(Debug, Clone, Default)]
pub struct FilterParams {
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// A full event type (`user.email_changed`) or a prefix ending in `.` (`user.`).
    pub event_type: Option<String>,
    pub actor_id: Option<String>,
    /// The API key a machine acted with (`metadata.api_key_id`).
    pub api_key_id: Option<String>,
    pub correlation_id: Option<String>,
    /// RFC 3339; events recorded at or after it.
    pub from: Option<String>,
    /// RFC 3339; events recorded at or before it.
    pub to: Option<String>,
}

/// Checked filters. Serialized as given (into an export's first line and
/// a cursor's fingerprint), with the event types a prefix stands for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip)]
    pub event_types: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub fn parse(params: &FilterParams) -> Result<Self, AppError> {
        let from = time("from", params.from.as_deref())?;
        let to = time("to", params.to.as_deref())?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(bad("from", "must not be after to"));
            }
        }
        Ok(Self {
            aggregate_type: params
                .aggregate_type
                .as_deref()
                .map(aggregate_type)
                .transpose()?,
            aggregate_id: id("aggregate_id", params.aggregate_id.as_deref())?,
            event_types: params.event_type.as_deref().map(event_types).transpose()?,
            event_type: params.event_type.clone(),
            actor_id: uuid_id("actor_id", params.actor_id.as_deref())?,
            api_key_id: uuid_id("api_key_id", params.api_key_id.as_deref())?,
            correlation_id: id("correlation_id", params.correlation_id.as_deref())?,
            from,
            to,
        })
    }

    /// Identifies the filters in a cursor, so that a cursor of one query is
    /// refused by another.
    pub fn fingerprint(&self) -> u64 {
        let canonical = serde_json::to_vec(self).expect("filters always serialize");
        let digest = Sha256::digest(canonical);
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// `limit`: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_limit(raw: Option<&str>) -> Result<i64, AppError> {
    match raw.map(str::parse::<i64>) {
        None => Ok(DEFAULT_PAGE),
        Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        Some(_) => Err(bad("limit", "must be an integer from 1 to 1000")),
    }
}

fn aggregate_type(raw: &str) -> Result<&'static str, AppError> {
    all_event_types()
        .map(|event_type| event_type.aggregate_type())
        .find(|known| *known == raw)
        .ok_or(bad(
            "aggregate_type",
            "is not an aggregate type of the event contract",
        ))
}

/// The contract's event types `raw` names: itself, or all those it prefixes
/// when it ends in `.`.
fn event_types(raw: &str) -> Result<Vec<&'static str>, AppError> {
    let names: Vec<&'static str> = all_event_types()
        .map(|event_type| event_type.name())
        .filter(|name| match raw.strip_suffix('.') {
            Some(_) => name.starts_with(raw),
            None => *name == raw,
        })
        .collect();
    if names.is_empty() {
        return Err(bad(
            "event_type",
            "names no event type of the contract (give a full type or a prefix ending in '.')",
        ));
    }
    Ok(names)
}

fn id(parameter: &'static str, raw: Option<&str>) -> Result<Option<String>, AppError> {
    match raw {
        None => Ok(None),
        Some(raw) if !raw.is_empty() && raw.chars().count() <= MAX_ID_CHARS => {
            Ok(Some(raw.to_owned()))
        }
        Some(_) => Err(bad(parameter, "must be 1 to 200 characters")),
    }
}

/// An id that is always a UUID (a user's, a key's), in the form metadata
/// carries it (lowercase, hyphenated), however it was written.
fn uuid_id(parameter: &'static str, raw: Option<&str>) -> Result<Option<String>, AppError> {
    raw.map(|raw| {
        uuid::Uuid::parse_str(raw)
            .map(|id| id.to_string())
            .map_err(|_| bad(parameter, "must be a UUID"))
    })
    .transpose()
}

fn time(parameter: &'static str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, AppError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| {
                bad(
                    parameter,
                    "must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z",
                )
            })
    })
    .transpose()
}

fn bad(parameter: &'static str, message: &'static str) -> AppError {
    AppError::BadParameter { parameter, message }
}

#[cfg(test)]
mod tests {
    use domain::{RoleEvent, UserEvent};

    use super::*;

    fn parsed(change: impl FnOnce(&mut FilterParams)) -> Result<AuditFilter, AppError> {
        let mut params = FilterParams::default();
        change(&mut params);
        AuditFilter::parse(&params)
    }

    fn refused_parameter(result: Result<AuditFilter, AppError>) -> &'static str {
        match result {
            Err(AppError::BadParameter { parameter, .. }) => parameter,
            other => panic!("expected a bad parameter, got {other:?}"),
        }
    }

    #[test]
    fn a_prefix_stands_for_every_event_type_it_starts() {
        let filter = parsed(|p| p.event_type = Some("role.".into())).unwrap();
        let expected: Vec<&str> = RoleEvent::EVENT_TYPES.iter().map(|t| t.name()).collect();
        assert_eq!(filter.event_types, Some(expected));
    }

    #[test]
    fn a_full_event_type_stands_for_itself_only() {
        let name = UserEvent::EMAIL_CHANGED.name();
        let filter = parsed(|p| p.event_type = Some(name.into())).unwrap();
        assert_eq!(filter.event_types, Some(vec![name]));
    }

    #[test]
    fn each_malformed_filter_is_refused_naming_its_parameter() {
        type Change = fn(&mut FilterParams);
        let cases: [(&str, Change); 10] = [
            ("aggregate_type", |p| {
                p.aggregate_type = Some("order".into())
            }),
            ("event_type", |p| p.event_type = Some("user".into())),
            ("event_type", |p| p.event_type = Some("nothing.".into())),
            ("aggregate_id", |p| p.aggregate_id = Some(String::new())),
            ("actor_id", |p| p.actor_id = Some("x".repeat(201))),
            ("actor_id", |p| p.actor_id = Some("null".into())),
            ("api_key_id", |p| p.api_key_id = Some("42".into())),
            ("from", |p| p.from = Some("yesterday".into())),
            ("to", |p| p.to = Some("2026-13-01T00:00:00Z".into())),
            ("from", |p| {
                p.from = Some("2026-02-01T00:00:00Z".into());
                p.to = Some("2026-01-01T00:00:00Z".into());
            }),
        ];
        for (parameter, change) in cases {
            assert_eq!(refused_parameter(parsed(change)), parameter);
        }
    }

    #[test]
    fn an_actor_is_found_however_its_uuid_is_written() {
        let id = "0194F3A0-5C1E-7000-8000-00000000000A";
        let filter = parsed(|p| p.actor_id = Some(id.into())).unwrap();
        assert_eq!(filter.actor_id.as_deref(), Some(id.to_lowercase().as_str()));
    }

    #[test]
    fn the_limit_is_one_to_a_thousand() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_limit(Some("1000")).unwrap(), 1000);
        for raw in ["0", "1001", "-1", "ten"] {
            assert!(matches!(
                page_limit(Some(raw)),
                Err(AppError::BadParameter {
                    parameter: "limit",
                    ..
                })
            ));
        }
    }

    #[test]
    fn different_filters_have_different_fingerprints() {
        let all = parsed(|_| {}).unwrap();
        let users = parsed(|p| p.event_type = Some("user.".into())).unwrap();
        assert_ne!(all.fingerprint(), users.fingerprint());
        assert_eq!(all.fingerprint(), parsed(|_| {}).unwrap().fingerprint());
    }
}
