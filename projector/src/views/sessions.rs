//! `sessions_view`: one row per session with its status, deadlines and how
//! it ended. Refresh token hashes are never stored.

use chrono::{DateTime, TimeDelta, Utc};
use domain::{EventType, SessionEvent, ERASED};
use uuid::Uuid;

use super::{Change, Column, EventContext, Projection, ReduceError, Value, View, ViewRow};

/// The values of `sessions_view.status`.
pub const ACTIVE: &str = "active";
pub const REVOKED: &str = "revoked";
pub const EXPIRED: &str = "expired";

/// A row of `sessions_view`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub end_reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub idle_timeout_seconds: i64,
    pub last_activity_at: DateTime<Utc>,
    /// `last_activity_at + idle_timeout_seconds`, stored for the expiry scan.
    pub idle_expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub sequence: i64,
    pub global_position: i64,
}

impl ViewRow for SessionRow {
    const VIEW: View = View::Sessions;

    fn key(&self) -> Uuid {
        self.session_id
    }

    fn sequence(&self) -> i64 {
        self.sequence
    }

    fn columns(&self) -> Vec<Column<'_>> {
        vec![
            Column::new("session_id", Value::Uuid(self.session_id)),
            Column::new("user_id", Value::Uuid(self.user_id)),
            Column::new("status", Value::Text(&self.status)),
            Column::new(
                "end_reason",
                Value::OptionalText(self.end_reason.as_deref()),
            ),
            Column::new("ip", Value::OptionalText(self.ip.as_deref())),
            Column::new(
                "user_agent",
                Value::OptionalText(self.user_agent.as_deref()),
            ),
            Column::new("started_at", Value::Time(self.started_at)),
            Column::new("expires_at", Value::Time(self.expires_at)),
            Column::new(
                "idle_timeout_seconds",
                Value::BigInt(self.idle_timeout_seconds),
            ),
            Column::new("last_activity_at", Value::Time(self.last_activity_at)),
            Column::new("idle_expires_at", Value::Time(self.idle_expires_at)),
            Column::new("ended_at", Value::OptionalTime(self.ended_at)),
            Column::new("sequence", Value::BigInt(self.sequence)),
            Column::new("global_position", Value::BigInt(self.global_position)),
        ]
    }

    fn person(&self) -> Option<Uuid> {
        Some(self.user_id)
    }

    /// The client's address and agent read [`ERASED`]; an absent one stays
    /// absent, as in the scrubbed `session.started`.
    fn erased(self) -> Self {
        let erase = |value: Option<String>| value.map(|_| ERASED.to_owned());
        Self {
            ip: erase(self.ip),
            user_agent: erase(self.user_agent),
            ..self
        }
    }
}

/// `sessions_view`, from session events.
pub struct SessionsView;

impl Projection for SessionsView {
    type Event = SessionEvent;
    type Row = SessionRow;
    type Change = Change<SessionRow>;

    fn reduce(
        current: Option<&SessionRow>,
        event: &SessionEvent,
        at: &EventContext,
    ) -> Result<Change<SessionRow>, ReduceError> {
        reduce(current, event, at)
    }
}

/// What `event` does to the session's row (`None` before it started). The
/// times come from the events themselves, not from when they were recorded.
pub fn reduce(
    current: Option<&SessionRow>,
    event: &SessionEvent,
    at: &EventContext,
) -> Result<Change<SessionRow>, ReduceError> {
    match current {
        None => started(event, at).map(Change::Insert),
        Some(row) => followed(row, event, at).map(Change::Update),
    }
}

fn started(event: &SessionEvent, at: &EventContext) -> Result<SessionRow, ReduceError> {
    let SessionEvent::Started {
        user_id,
        started_at,
        expires_at,
        idle_timeout_seconds,
        ip,
        user_agent,
        ..
    } = event
    else {
        return Err(ReduceError::NotStarted {
            event: event.contract_type(),
        });
    };
    Ok(SessionRow {
        session_id: at.aggregate_id,
        user_id: *user_id,
        status: ACTIVE.to_owned(),
        end_reason: None,
        ip: ip.clone(),
        user_agent: user_agent.clone(),
        started_at: *started_at,
        expires_at: *expires_at,
        idle_timeout_seconds: *idle_timeout_seconds,
        last_activity_at: *started_at,
        idle_expires_at: idle_deadline(*started_at, *idle_timeout_seconds, SessionEvent::STARTED)?,
        ended_at: None,
        sequence: at.sequence,
        global_position: at.global_position,
    })
}

fn followed(
    row: &SessionRow,
    event: &SessionEvent,
    at: &EventContext,
) -> Result<SessionRow, ReduceError> {
    let mut next = SessionRow {
        sequence: at.sequence,
        global_position: at.global_position,
        ..row.clone()
    };
    match event {
        SessionEvent::Started { .. } => {
            return Err(ReduceError::AlreadyStarted {
                event: SessionEvent::STARTED,
            })
        }
        SessionEvent::Refreshed { refreshed_at, .. } => {
            next.last_activity_at = *refreshed_at;
            next.idle_expires_at = idle_deadline(
                *refreshed_at,
                row.idle_timeout_seconds,
                SessionEvent::REFRESHED,
            )?;
        }
        SessionEvent::Revoked { reason, revoked_at } => {
            end(&mut next, REVOKED, reason.as_str(), *revoked_at);
        }
        SessionEvent::Expired { reason, expired_at } => {
            end(&mut next, EXPIRED, reason.as_str(), *expired_at);
        }
    }
    Ok(next)
}

fn end(row: &mut SessionRow, status: &str, reason: &str, at: DateTime<Utc>) {
    row.status = status.to_owned();
    row.end_reason = Some(reason.to_owned());
    row.ended_at = Some(at);
}

fn idle_deadline(
    last_activity_at: DateTime<Utc>,
    idle_timeout_seconds: i64,
    event: EventType,
) -> Result<DateTime<Utc>, ReduceError> {
    TimeDelta::try_seconds(idle_timeout_seconds)
        .and_then(|timeout| last_activity_at.checked_add_signed(timeout))
        .ok_or(ReduceError::OutOfRange {
            event,
            field: "idle_timeout_seconds",
        })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use domain::{ExpiryReason, RefreshTokenHash, RevocationReason};

    use super::*;

    const IDLE: i64 = 600;

    fn started_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 6, 7, 8, 9).unwrap()
    }

    fn start_context() -> EventContext {
        EventContext {
            aggregate_id: Uuid::from_u128(0x5e55),
            sequence: 1,
            global_position: 3,
            // Recorded later than it started: the row keeps the event's times.
            occurred_at: started_at() + TimeDelta::seconds(1),
        }
    }

    fn next_at() -> EventContext {
        EventContext {
            sequence: 2,
            global_position: 8,
            occurred_at: started_at() + TimeDelta::days(1),
            ..start_context()
        }
    }

    fn token() -> RefreshTokenHash {
        RefreshTokenHash::new("f00d".into())
    }

    fn start(idle_timeout_seconds: i64) -> SessionEvent {
        SessionEvent::Started {
            second_factor_used: false,
            session_id: start_context().aggregate_id,
            user_id: Uuid::from_u128(0xada),
            refresh_token_hash: token(),
            started_at: started_at(),
            expires_at: started_at() + TimeDelta::hours(1),
            idle_timeout_seconds,
            ip: Some("198.51.100.2".into()),
            user_agent: None,
        }
    }

    fn started_row() -> SessionRow {
        SessionRow {
            session_id: start_context().aggregate_id,
            user_id: Uuid::from_u128(0xada),
            status: "active".into(),
            end_reason: None,
            ip: Some("198.51.100.2".into()),
            user_agent: None,
            started_at: started_at(),
            expires_at: started_at() + TimeDelta::hours(1),
            idle_timeout_seconds: IDLE,
            last_activity_at: started_at(),
            idle_expires_at: started_at() + TimeDelta::seconds(IDLE),
            ended_at: None,
            sequence: 1,
            global_position: 3,
        }
    }

    fn advanced(change: impl FnOnce(&mut SessionRow)) -> SessionRow {
        let mut row = SessionRow {
            sequence: 2,
            global_position: 8,
            ..started_row()
        };
        change(&mut row);
        row
    }

    /// Given a started session, when `event` happens.
    fn when_started(event: &SessionEvent) -> Result<Change<SessionRow>, ReduceError> {
        reduce(Some(&started_row()), event, &next_at())
    }

    #[test]
    fn given_no_session_when_started_then_an_active_row_is_inserted_with_its_deadlines() {
        let change = reduce(None, &start(IDLE), &start_context());
        assert_eq!(change, Ok(Change::Insert(started_row())));
    }

    #[test]
    fn given_a_session_when_refreshed_then_the_idle_deadline_moves() {
        let refreshed_at = started_at() + TimeDelta::minutes(5);
        let event = SessionEvent::Refreshed {
            refresh_token_hash: token(),
            refreshed_at,
        };
        let expected = advanced(|row| {
            row.last_activity_at = refreshed_at;
            row.idle_expires_at = refreshed_at + TimeDelta::seconds(IDLE);
        });
        assert_eq!(when_started(&event), Ok(Change::Update(expected)));
    }

    #[test]
    fn given_a_session_when_revoked_then_it_ended_revoked_for_the_reason() {
        let revoked_at = started_at() + TimeDelta::minutes(7);
        for reason in [RevocationReason::LoggedOut, RevocationReason::Revoked] {
            let event = SessionEvent::Revoked { reason, revoked_at };
            let expected = advanced(|row| {
                row.status = "revoked".into();
                row.end_reason = Some(reason.as_str().into());
                row.ended_at = Some(revoked_at);
            });
            assert_eq!(when_started(&event), Ok(Change::Update(expected)));
        }
    }

    #[test]
    fn given_a_session_when_expired_then_it_ended_expired_for_the_reason() {
        let expired_at = started_at() + TimeDelta::hours(2);
        for reason in [ExpiryReason::Absolute, ExpiryReason::Idle] {
            let event = SessionEvent::Expired { reason, expired_at };
            let expected = advanced(|row| {
                row.status = "expired".into();
                row.end_reason = Some(reason.as_str().into());
                row.ended_at = Some(expired_at);
            });
            assert_eq!(when_started(&event), Ok(Change::Update(expected)));
        }
    }

    #[test]
    fn given_no_session_when_anything_but_a_start_happens_then_it_is_refused() {
        let events = [
            SessionEvent::Refreshed {
                refresh_token_hash: token(),
                refreshed_at: started_at(),
            },
            SessionEvent::Revoked {
                reason: RevocationReason::LoggedOut,
                revoked_at: started_at(),
            },
            SessionEvent::Expired {
                reason: ExpiryReason::Idle,
                expired_at: started_at(),
            },
        ];
        for event in events {
            assert_eq!(
                reduce(None, &event, &start_context()),
                Err(ReduceError::NotStarted {
                    event: event.contract_type()
                })
            );
        }
    }

    #[test]
    fn given_a_session_when_started_again_then_it_is_refused() {
        assert_eq!(
            when_started(&start(IDLE)),
            Err(ReduceError::AlreadyStarted {
                event: SessionEvent::STARTED
            })
        );
    }

    #[test]
    fn given_no_session_when_started_with_an_idle_timeout_past_any_date_then_it_is_refused() {
        assert_eq!(
            reduce(None, &start(i64::MAX), &start_context()),
            Err(ReduceError::OutOfRange {
                event: SessionEvent::STARTED,
                field: "idle_timeout_seconds"
            })
        );
    }

    #[test]
    fn given_a_session_row_when_its_person_is_erased_then_address_and_agent_read_erased() {
        let with_agent = SessionRow {
            user_agent: Some("Probe/1.0".into()),
            ..started_row()
        };
        let expected = SessionRow {
            ip: Some(ERASED.into()),
            user_agent: Some(ERASED.into()),
            ..started_row()
        };
        assert_eq!(with_agent.erased(), expected);
    }

    #[test]
    fn given_a_session_row_without_an_agent_when_erased_then_the_agent_stays_absent() {
        let erased = started_row().erased();
        assert_eq!(erased.ip.as_deref(), Some(ERASED));
        assert_eq!(erased.user_agent, None);
    }

    #[test]
    fn given_an_erased_persons_session_when_revoked_after_the_erasure_then_the_row_ends_erased_for_user_erased(
    ) {
        // Events after `user.erased` (odd order): the reducer keeps the
        // reason, the writer erases the values of the row it writes.
        let revoked_at = started_at() + TimeDelta::minutes(1);
        let event = SessionEvent::Revoked {
            reason: RevocationReason::UserErased,
            revoked_at,
        };
        let Ok(change) = reduce(Some(&started_row().erased()), &event, &next_at()) else {
            panic!("a revocation applies");
        };
        let expected = advanced(|row| {
            row.status = "revoked".into();
            row.end_reason = Some("user_erased".into());
            row.ended_at = Some(revoked_at);
            row.ip = Some(ERASED.into());
        });
        assert_eq!(change.erased(), Change::Update(expected));
    }

    #[test]
    fn a_session_row_belongs_to_its_user() {
        assert_eq!(started_row().person(), Some(Uuid::from_u128(0xada)));
    }

    #[test]
    fn no_column_holds_the_refresh_token_hash() {
        let columns = format!("{:?}", started_row().columns());
        assert!(!columns.contains(token().as_str()));
    }
}
