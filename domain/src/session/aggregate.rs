use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::SessionCommand;
use super::errors::SessionError;
use super::events::SessionEvent;
use super::history::SessionServices;
use super::values::{ExpiryReason, RefreshTokenHash, ReuseInterval, RevocationReason};

/// How and when a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    Revoked {
        reason: RevocationReason,
        at: DateTime<Utc>,
    },
    Expired {
        reason: ExpiryReason,
        at: DateTime<Utc>,
    },
}

impl SessionEnd {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Revoked { at, .. } | Self::Expired { at, .. } => *at,
        }
    }
}

/// A login that can be extended with a refresh token. All fields are `None` until the
/// session is started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Session {
    id: Option<Uuid>,
    user_id: Option<Uuid>,
    refresh_token_hash: Option<RefreshTokenHash>,
    /// The token the last rotation replaced, and when: the one a concurrent
    /// refresh presents. Older ones are looked up in the history, so the
    /// state stays the same size however long the session lives.
    previous_refresh_token: Option<SupersededToken>,
    started_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    idle_timeout_seconds: i64,
    last_activity_at: Option<DateTime<Utc>>,
    ip: Option<String>,
    user_agent: Option<String>,
    end: Option<SessionEnd>,
    #[serde(default)]
    second_factor_used: bool,
}

/// A refresh token rotated away `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SupersededToken {
    hash: RefreshTokenHash,
    at: DateTime<Utc>,
}

/// The single event a command produces, or `None` when it changes nothing.
type Decision = Result<Option<SessionEvent>, SessionError>;

impl Session {
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    pub fn user_id(&self) -> Option<Uuid> {
        self.user_id
    }

    /// The hash of the refresh token that is valid now.
    pub fn refresh_token_hash(&self) -> Option<&RefreshTokenHash> {
        self.refresh_token_hash.as_ref()
    }

    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }

    /// Whether the person proved a second factor when the session started.
    pub fn second_factor_used(&self) -> bool {
        self.second_factor_used
    }

    /// The absolute deadline: no refresh extends it.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    pub fn idle_timeout_seconds(&self) -> i64 {
        self.idle_timeout_seconds
    }

    /// When the session started or was last refreshed.
    pub fn last_activity_at(&self) -> Option<DateTime<Utc>> {
        self.last_activity_at
    }

    /// The last activity plus the idle timeout; a timeout too large to add never runs out.
    pub fn idle_deadline(&self) -> Option<DateTime<Utc>> {
        let last_activity_at = self.last_activity_at?;
        Some(
            TimeDelta::try_seconds(self.idle_timeout_seconds)
                .and_then(|timeout| last_activity_at.checked_add_signed(timeout))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    pub fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// How and when the session ended, once a revocation or expiry is recorded.
    pub fn ended(&self) -> Option<&SessionEnd> {
        self.end.as_ref()
    }

    pub fn is_started(&self) -> bool {
        self.id.is_some()
    }

    /// Started, and no revocation or expiry recorded. A session may be active and
    /// still past a deadline: see [`Session::due_expiry`].
    pub fn is_active(&self) -> bool {
        self.is_started() && self.end.is_none()
    }

    /// The deadline the session has run past at `now`, absolute first; `None` when
    /// neither has passed or the session was never started.
    pub fn due_expiry(&self, now: DateTime<Utc>) -> Option<ExpiryReason> {
        if self.expires_at.is_some_and(|deadline| now >= deadline) {
            Some(ExpiryReason::Absolute)
        } else if self.idle_deadline().is_some_and(|deadline| now >= deadline) {
            Some(ExpiryReason::Idle)
        } else {
            None
        }
    }

    /// Whether the session's tokens are honoured at `now`: active and past
    /// neither deadline, even before the worker records the expiry. The one
    /// place liveness is decided.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.is_active() && self.due_expiry(now).is_none()
    }

    /// The session its first and last events make: enough for liveness and
    /// deadlines, since each refresh replaces the last activity and token.
    pub fn from_first_and_last(first: SessionEvent, last: Option<SessionEvent>) -> Self {
        let mut session = Self::default();
        session.apply(first);
        if let Some(last) = last {
            session.apply(last);
        }
        session
    }

    /// `superseded_at`: when the token a refresh presents was rotated away,
    /// if it was (see [`Session::superseded_at`]).
    fn decide(
        &self,
        command: SessionCommand,
        superseded_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<SessionEvent>, SessionError> {
        let decision = match command {
            SessionCommand::Start {
                session_id,
                user_id,
                refresh_token_hash,
                started_at,
                expires_at,
                idle_timeout_seconds,
                ip,
                user_agent,
                second_factor_used,
            } => self.start(SessionEvent::Started {
                session_id,
                user_id,
                refresh_token_hash,
                started_at,
                expires_at,
                idle_timeout_seconds,
                ip,
                user_agent,
                second_factor_used,
            }),
            SessionCommand::Refresh {
                presented,
                next,
                reuse_interval,
                now,
            } => self.refresh(&presented, superseded_at, next, reuse_interval, now),
            SessionCommand::Revoke { reason, now } => self.revoke(reason, now),
            SessionCommand::Expire { now } => self.expire(now),
        };
        Ok(decision?.into_iter().collect())
    }

    fn start(&self, started: SessionEvent) -> Decision {
        if self.is_started() {
            return Err(SessionError::AlreadyStarted);
        }
        Ok(Some(started))
    }

    /// The current token, or one rotated away within the reuse interval (a
    /// concurrent refresh won the race), rotates the current token to `next`.
    /// Only the current token is rotated away, so reusing an old token never
    /// restarts its interval. A token rotated away earlier revokes the session:
    /// whoever holds the current token may have stolen it. The caller still
    /// answers the request as unauthorized.
    fn refresh(
        &self,
        presented: &RefreshTokenHash,
        superseded_at: Option<DateTime<Utc>>,
        next: RefreshTokenHash,
        reuse_interval: ReuseInterval,
        now: DateTime<Utc>,
    ) -> Decision {
        let current = self
            .refresh_token_hash
            .as_ref()
            .ok_or(SessionError::NotFound)?;
        if self.end.is_some() {
            return Err(SessionError::Ended);
        }
        if presented == current || superseded_at.is_some_and(|at| reuse_interval.covers(at, now)) {
            return self.rotate(next, now);
        }
        if superseded_at.is_some() {
            return Ok(Some(SessionEvent::Revoked {
                reason: RevocationReason::RefreshTokenReused,
                revoked_at: now,
            }));
        }
        Err(SessionError::InvalidRefreshToken)
    }

    fn rotate(&self, next: RefreshTokenHash, now: DateTime<Utc>) -> Decision {
        if self.due_expiry(now).is_some() {
            return Err(SessionError::Expired);
        }
        Ok(Some(SessionEvent::Refreshed {
            refresh_token_hash: next,
            refreshed_at: now,
        }))
    }

    fn revoke(&self, reason: RevocationReason, now: DateTime<Utc>) -> Decision {
        self.ensure_started()?;
        if self.end.is_some() {
            return Ok(None);
        }
        Ok(Some(SessionEvent::Revoked {
            reason,
            revoked_at: now,
        }))
    }

    fn expire(&self, now: DateTime<Utc>) -> Decision {
        self.ensure_started()?;
        if self.end.is_some() {
            return Ok(None);
        }
        let reason = self.due_expiry(now).ok_or(SessionError::NotDue)?;
        Ok(Some(SessionEvent::Expired {
            reason,
            expired_at: now,
        }))
    }

    /// When the token a refresh presents was rotated away: the previous
    /// token is in the state; only an older one costs a history lookup,
    /// and only while the session is active.
    async fn superseded_at(
        &self,
        command: &SessionCommand,
        services: &SessionServices,
    ) -> Result<Option<DateTime<Utc>>, SessionError> {
        let SessionCommand::Refresh { presented, .. } = command else {
            return Ok(None);
        };
        let (Some(id), Some(current)) = (self.id, &self.refresh_token_hash) else {
            return Ok(None);
        };
        if presented == current || self.end.is_some() {
            return Ok(None);
        }
        match &self.previous_refresh_token {
            Some(previous) if &previous.hash == presented => Ok(Some(previous.at)),
            _ => Ok(services.history().superseded_at(id, presented).await?),
        }
    }

    fn ensure_started(&self) -> Result<(), SessionError> {
        if self.is_started() {
            Ok(())
        } else {
            Err(SessionError::NotFound)
        }
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = SessionServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let superseded_at = self.superseded_at(&command, services).await?;
        for event in self.decide(command, superseded_at)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SessionEvent::Started {
                session_id,
                user_id,
                refresh_token_hash,
                started_at,
                expires_at,
                idle_timeout_seconds,
                ip,
                user_agent,
                second_factor_used,
            } => {
                self.second_factor_used = second_factor_used;
                self.id = Some(session_id);
                self.user_id = Some(user_id);
                self.refresh_token_hash = Some(refresh_token_hash);
                self.started_at = Some(started_at);
                self.expires_at = Some(expires_at);
                self.idle_timeout_seconds = idle_timeout_seconds;
                self.last_activity_at = Some(started_at);
                self.ip = ip;
                self.user_agent = user_agent;
            }
            SessionEvent::Refreshed {
                refresh_token_hash,
                refreshed_at,
            } => {
                self.previous_refresh_token = self
                    .refresh_token_hash
                    .replace(refresh_token_hash)
                    .map(|hash| SupersededToken {
                        hash,
                        at: refreshed_at,
                    });
                self.last_activity_at = Some(refreshed_at);
            }
            SessionEvent::Revoked { reason, revoked_at } => {
                self.end = Some(SessionEnd::Revoked {
                    reason,
                    at: revoked_at,
                });
            }
            SessionEvent::Expired { reason, expired_at } => {
                self.end = Some(SessionEnd::Expired {
                    reason,
                    at: expired_at,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::{AggregateTestExecutor, TestFramework};

    use std::sync::Arc;

    use super::*;
    use crate::session::history::tests::{services_of, Down, Unreadable};
    use crate::session::history::HistoryUnavailable;

    type SessionTest = TestFramework<Session>;

    /// The session these events make, with the history they make.
    fn given(events: Vec<SessionEvent>) -> AggregateTestExecutor<Session> {
        SessionTest::with(services_of(&events)).given(events)
    }

    fn given_no_previous_events() -> AggregateTestExecutor<Session> {
        SessionTest::with(services_of(&[])).given_no_previous_events()
    }

    /// Idle timeout of the test session: 10 minutes.
    const IDLE_SECONDS: i64 = 600;

    fn session_id() -> Uuid {
        Uuid::from_u128(0x5e55)
    }

    fn user_id() -> Uuid {
        Uuid::from_u128(0x0123_4567_89ab_cdef)
    }

    /// A fixed instant plus `minutes`.
    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    fn token(n: u8) -> RefreshTokenHash {
        RefreshTokenHash::new(format!("{n:02x}").repeat(32))
    }

    /// Started at t(0), absolute deadline t(60), idle after 10 minutes, token 1.
    fn started() -> SessionEvent {
        SessionEvent::Started {
            second_factor_used: false,
            session_id: session_id(),
            user_id: user_id(),
            refresh_token_hash: token(1),
            started_at: t(0),
            expires_at: t(60),
            idle_timeout_seconds: IDLE_SECONDS,
            ip: Some("203.0.113.7".into()),
            user_agent: Some("curl/8".into()),
        }
    }

    fn start_command() -> SessionCommand {
        SessionCommand::Start {
            second_factor_used: false,
            session_id: session_id(),
            user_id: user_id(),
            refresh_token_hash: token(1),
            started_at: t(0),
            expires_at: t(60),
            idle_timeout_seconds: IDLE_SECONDS,
            ip: Some("203.0.113.7".into()),
            user_agent: Some("curl/8".into()),
        }
    }

    fn refreshed(n: u8, minutes: i64) -> SessionEvent {
        SessionEvent::Refreshed {
            refresh_token_hash: token(n),
            refreshed_at: t(minutes),
        }
    }

    /// The reuse interval of the test refreshes: 10 seconds.
    fn reuse_interval() -> ReuseInterval {
        ReuseInterval::new(TimeDelta::seconds(10))
    }

    fn refresh(presented: u8, next: u8, minutes: i64) -> SessionCommand {
        refresh_at(presented, next, t(minutes))
    }

    fn refresh_at(presented: u8, next: u8, now: DateTime<Utc>) -> SessionCommand {
        SessionCommand::Refresh {
            presented: token(presented),
            next: token(next),
            reuse_interval: reuse_interval(),
            now,
        }
    }

    fn refreshed_at(n: u8, at: DateTime<Utc>) -> SessionEvent {
        SessionEvent::Refreshed {
            refresh_token_hash: token(n),
            refreshed_at: at,
        }
    }

    /// t(5) plus `seconds`: around the rotation of token 1 in [`rotated_at_t5`].
    fn after_t5(seconds: i64) -> DateTime<Utc> {
        t(5) + TimeDelta::seconds(seconds)
    }

    /// Token 1 rotated away to token 2 at t(5).
    fn rotated_at_t5() -> Vec<SessionEvent> {
        vec![started(), refreshed(2, 5)]
    }

    fn revoked(reason: RevocationReason, minutes: i64) -> SessionEvent {
        SessionEvent::Revoked {
            reason,
            revoked_at: t(minutes),
        }
    }

    fn revoked_at(at: DateTime<Utc>) -> SessionEvent {
        SessionEvent::Revoked {
            reason: RevocationReason::RefreshTokenReused,
            revoked_at: at,
        }
    }

    fn expired(reason: ExpiryReason, minutes: i64) -> SessionEvent {
        SessionEvent::Expired {
            reason,
            expired_at: t(minutes),
        }
    }

    fn ended_histories() -> Vec<Vec<SessionEvent>> {
        vec![
            vec![started(), revoked(RevocationReason::LoggedOut, 1)],
            vec![started(), expired(ExpiryReason::Idle, 11)],
        ]
    }

    #[test]
    fn start_a_new_session() {
        given_no_previous_events()
            .when(start_command())
            .then_expect_events(vec![started()]);
    }

    #[test]
    fn start_a_started_session_is_rejected() {
        given(vec![started()])
            .when(start_command())
            .then_expect_error(SessionError::AlreadyStarted);
    }

    #[test]
    fn any_other_command_on_an_unknown_session_is_not_found() {
        for command in [
            refresh(1, 2, 1),
            SessionCommand::Revoke {
                reason: RevocationReason::Revoked,
                now: t(1),
            },
            SessionCommand::Expire { now: t(61) },
        ] {
            given_no_previous_events()
                .when(command)
                .then_expect_error(SessionError::NotFound);
        }
    }

    #[test]
    fn refresh_rotates_the_token() {
        given(vec![started()])
            .when(refresh(1, 2, 5))
            .then_expect_events(vec![refreshed(2, 5)]);
    }

    #[test]
    fn refresh_with_the_latest_token_after_rotations() {
        given(vec![started(), refreshed(2, 5), refreshed(3, 10)])
            .when(refresh(3, 4, 15))
            .then_expect_events(vec![refreshed(4, 15)]);
    }

    #[test]
    fn refresh_an_ended_session_is_rejected() {
        for history in ended_histories() {
            given(history)
                .when(refresh(1, 2, 5))
                .then_expect_error(SessionError::Ended);
        }
    }

    #[test]
    fn refresh_at_the_absolute_deadline_is_expired() {
        given(vec![
            started(),
            refreshed(2, 9),
            refreshed(3, 18),
            refreshed(4, 27),
            refreshed(5, 36),
            refreshed(6, 45),
            refreshed(7, 54),
        ])
        .when(refresh(7, 8, 60))
        .then_expect_error(SessionError::Expired);
    }

    #[test]
    fn refresh_at_the_idle_deadline_is_expired() {
        given(vec![started()])
            .when(refresh(1, 2, 10))
            .then_expect_error(SessionError::Expired);
    }

    #[test]
    fn refresh_moves_the_idle_deadline() {
        given(vec![started(), refreshed(2, 9)])
            .when(refresh(2, 3, 18))
            .then_expect_events(vec![refreshed(3, 18)]);
    }

    #[test]
    fn refresh_with_a_rotated_token_revokes_the_session() {
        given(vec![started(), refreshed(2, 5), refreshed(3, 6)])
            .when(refresh(1, 9, 7))
            .then_expect_events(vec![revoked(RevocationReason::RefreshTokenReused, 7)]);
    }

    #[test]
    fn a_token_rotated_away_less_than_the_reuse_interval_ago_rotates_the_current_one() {
        // -1 s: this process's clock is behind the one that rotated it.
        for seconds in [-1, 0, 1, 9] {
            given(rotated_at_t5())
                .when(refresh_at(1, 3, after_t5(seconds)))
                .then_expect_events(vec![refreshed_at(3, after_t5(seconds))]);
        }
    }

    #[test]
    fn a_token_rotated_away_exactly_the_reuse_interval_ago_revokes_the_session() {
        given(rotated_at_t5())
            .when(refresh_at(1, 3, after_t5(10)))
            .then_expect_events(vec![revoked_at(after_t5(10))]);
    }

    #[test]
    fn a_token_rotated_away_beyond_the_reuse_interval_revokes_the_session() {
        given(rotated_at_t5())
            .when(refresh_at(1, 3, after_t5(11)))
            .then_expect_events(vec![revoked_at(after_t5(11))]);
    }

    #[test]
    fn without_a_reuse_interval_a_rotated_token_revokes_at_once() {
        given(rotated_at_t5())
            .when(SessionCommand::Refresh {
                presented: token(1),
                next: token(3),
                reuse_interval: ReuseInterval::NONE,
                now: t(5),
            })
            .then_expect_events(vec![revoked_at(t(5))]);
    }

    /// Token 1 is presented twice within its interval (tokens 2 and 3 issued
    /// from it); the second use rotated token 2 away at t(5) + 4 s.
    fn token_1_used_twice() -> Vec<SessionEvent> {
        vec![started(), refreshed(2, 5), refreshed_at(3, after_t5(4))]
    }

    #[test]
    fn reusing_a_token_within_its_interval_does_not_restart_the_interval() {
        given(token_1_used_twice())
            .when(refresh_at(1, 4, after_t5(9)))
            .then_expect_events(vec![refreshed_at(4, after_t5(9))]);
        given(token_1_used_twice())
            .when(refresh_at(1, 4, after_t5(10)))
            .then_expect_events(vec![revoked_at(after_t5(10))]);
    }

    #[test]
    fn every_token_rotated_away_keeps_its_own_interval() {
        // Token 2 (the first winner's) was rotated away at t(5) + 4 s.
        given(token_1_used_twice())
            .when(refresh_at(2, 4, after_t5(13)))
            .then_expect_events(vec![refreshed_at(4, after_t5(13))]);
        given(token_1_used_twice())
            .when(refresh_at(2, 4, after_t5(14)))
            .then_expect_events(vec![revoked_at(after_t5(14))]);
    }

    #[test]
    fn the_current_token_rotates_after_reuses_within_the_interval() {
        given(token_1_used_twice())
            .when(refresh_at(3, 4, after_t5(5)))
            .then_expect_events(vec![refreshed_at(4, after_t5(5))]);
    }

    #[test]
    fn an_unknown_token_within_the_reuse_interval_is_rejected() {
        given(rotated_at_t5())
            .when(refresh_at(9, 3, after_t5(1)))
            .then_expect_error(SessionError::InvalidRefreshToken);
    }

    #[test]
    fn a_token_within_the_reuse_interval_cannot_refresh_an_ended_or_expired_session() {
        let mut ended = rotated_at_t5();
        ended.push(revoked(RevocationReason::LoggedOut, 5));
        given(ended)
            .when(refresh_at(1, 3, after_t5(1)))
            .then_expect_error(SessionError::Ended);
        // Token 2 rotated away 5 s before the absolute deadline.
        let near_deadline = t(60) - TimeDelta::seconds(5);
        given(vec![
            started(),
            refreshed(2, 9),
            refreshed(3, 18),
            refreshed(4, 27),
            refreshed(5, 36),
            refreshed(6, 45),
            refreshed(7, 54),
            refreshed_at(8, near_deadline),
        ])
        .when(refresh(7, 9, 60))
        .then_expect_error(SessionError::Expired);
    }

    #[test]
    fn the_previous_token_within_the_interval_needs_no_history() {
        let down = Arc::new(Down);
        SessionTest::with(SessionServices::new(Arc::new(Unreadable(down))))
            .given(rotated_at_t5())
            .when(refresh_at(1, 3, after_t5(1)))
            .then_expect_events(vec![refreshed_at(3, after_t5(1))]);
    }

    #[test]
    fn an_older_token_when_the_history_cannot_be_read_writes_nothing() {
        let down: Arc<dyn std::error::Error + Send + Sync> = Arc::new(Down);
        SessionTest::with(SessionServices::new(Arc::new(Unreadable(down.clone()))))
            .given(vec![started(), refreshed(2, 5), refreshed(3, 6)])
            .when(refresh(1, 9, 7))
            .then_expect_error(SessionError::HistoryUnavailable(HistoryUnavailable(down)));
    }

    #[test]
    fn the_state_stays_the_same_size_however_many_rotations() {
        let size_after = |rotations: u8| {
            let mut session = Session::default();
            session.apply(started());
            for n in 0..rotations {
                session.apply(refreshed(n.wrapping_add(2), 5));
            }
            serde_json::to_string(&session).unwrap().len()
        };
        assert_eq!(size_after(2), size_after(250));
    }

    #[test]
    fn refresh_with_an_unknown_token_is_rejected() {
        given(vec![started(), refreshed(2, 5)])
            .when(refresh(9, 3, 6))
            .then_expect_error(SessionError::InvalidRefreshToken);
    }

    #[test]
    fn revoke() {
        given(vec![started()])
            .when(SessionCommand::Revoke {
                reason: RevocationReason::PasswordChanged,
                now: t(3),
            })
            .then_expect_events(vec![revoked(RevocationReason::PasswordChanged, 3)]);
    }

    #[test]
    fn revoke_an_ended_session_writes_nothing() {
        for history in ended_histories() {
            given(history)
                .when(SessionCommand::Revoke {
                    reason: RevocationReason::UserDeactivated,
                    now: t(20),
                })
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn expire_at_the_absolute_deadline() {
        given(vec![started(), refreshed(2, 55)])
            .when(SessionCommand::Expire { now: t(60) })
            .then_expect_events(vec![expired(ExpiryReason::Absolute, 60)]);
    }

    #[test]
    fn expire_past_both_deadlines_is_absolute() {
        given(vec![started()])
            .when(SessionCommand::Expire { now: t(61) })
            .then_expect_events(vec![expired(ExpiryReason::Absolute, 61)]);
    }

    #[test]
    fn expire_at_the_idle_deadline() {
        given(vec![started(), refreshed(2, 5)])
            .when(SessionCommand::Expire { now: t(15) })
            .then_expect_events(vec![expired(ExpiryReason::Idle, 15)]);
    }

    #[test]
    fn expire_before_any_deadline_is_rejected() {
        given(vec![started(), refreshed(2, 5)])
            .when(SessionCommand::Expire { now: t(14) })
            .then_expect_error(SessionError::NotDue);
    }

    #[test]
    fn expire_an_ended_session_writes_nothing() {
        for history in ended_histories() {
            given(history)
                .when(SessionCommand::Expire { now: t(61) })
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn a_huge_idle_timeout_never_runs_out() {
        let mut session = Session::default();
        session.apply(SessionEvent::Started {
            second_factor_used: false,
            session_id: session_id(),
            user_id: user_id(),
            refresh_token_hash: token(1),
            started_at: t(0),
            expires_at: t(60),
            idle_timeout_seconds: i64::MAX,
            ip: None,
            user_agent: None,
        });
        assert_eq!(session.idle_deadline(), Some(DateTime::<Utc>::MAX_UTC));
        assert_eq!(session.due_expiry(t(59)), None);
        assert_eq!(session.due_expiry(t(60)), Some(ExpiryReason::Absolute));
    }

    #[test]
    fn accessors_reflect_applied_events() {
        let mut session = Session::default();
        assert!(!session.is_started());
        assert!(!session.is_active());
        assert_eq!(session.idle_deadline(), None);
        assert_eq!(session.due_expiry(t(100)), None);
        session.apply(started());
        session.apply(refreshed(2, 5));
        assert!(session.is_active());
        assert_eq!(session.id(), Some(session_id()));
        assert_eq!(session.user_id(), Some(user_id()));
        assert_eq!(session.refresh_token_hash(), Some(&token(2)));
        assert_eq!(session.started_at(), Some(t(0)));
        assert_eq!(session.expires_at(), Some(t(60)));
        assert_eq!(session.idle_timeout_seconds(), IDLE_SECONDS);
        assert_eq!(session.last_activity_at(), Some(t(5)));
        assert_eq!(session.idle_deadline(), Some(t(15)));
        assert_eq!(session.ip(), Some("203.0.113.7"));
        assert_eq!(session.user_agent(), Some("curl/8"));
        assert_eq!(session.ended(), None);
        session.apply(revoked(RevocationReason::UserLocked, 7));
        assert!(!session.is_active());
        assert!(session.is_started());
        let end = SessionEnd::Revoked {
            reason: RevocationReason::UserLocked,
            at: t(7),
        };
        assert_eq!(session.ended(), Some(&end));
        assert_eq!(end.at(), t(7));
    }

    #[test]
    fn an_expired_session_records_why_and_when() {
        let mut session = Session::default();
        session.apply(started());
        session.apply(expired(ExpiryReason::Absolute, 60));
        assert_eq!(
            session.ended(),
            Some(&SessionEnd::Expired {
                reason: ExpiryReason::Absolute,
                at: t(60),
            })
        );
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let mut session = Session::default();
        session.apply(started());
        session.apply(refreshed(2, 5));
        let json = serde_json::to_string(&session).unwrap();
        let back: Session = serde_json::from_str(&json).unwrap();
        assert_eq!(back.refresh_token_hash(), Some(&token(2)));
        assert_eq!(back.last_activity_at(), Some(t(5)));
        assert_eq!(
            back.decide(refresh(2, 9, 6), None),
            Ok(vec![refreshed(9, 6)])
        );
        assert_eq!(
            back.decide(refresh(1, 9, 6), Some(t(5))),
            Ok(vec![revoked(RevocationReason::RefreshTokenReused, 6)])
        );
    }

    #[test]
    fn a_session_is_live_until_it_ends_or_a_deadline_passes() {
        // given a session started at t(0), idle after 10 minutes, absolute at t(60)
        let cases = [
            ("just started", vec![started()], 9, true),
            ("idle deadline reached", vec![started()], 10, false),
            (
                "refreshed at t(55)",
                vec![started(), refreshed(2, 55)],
                59,
                true,
            ),
            (
                "absolute deadline reached",
                vec![started(), refreshed(2, 55)],
                60,
                false,
            ),
            (
                "logged out",
                vec![started(), revoked(RevocationReason::LoggedOut, 1)],
                2,
                false,
            ),
            (
                "expired",
                vec![started(), expired(ExpiryReason::Idle, 11)],
                5,
                false,
            ),
        ];
        for (case, history, minutes, live) in cases {
            let mut session = Session::default();
            history.into_iter().for_each(|event| session.apply(event));
            // when/then
            assert_eq!(session.is_live(t(minutes)), live, "{case}");
        }
        assert!(!Session::default().is_live(t(0)));
    }

    #[test]
    fn first_and_last_events_decide_liveness_like_the_whole_stream() {
        let history = [
            started(),
            refreshed(2, 5),
            refreshed(3, 12),
            refreshed(4, 20),
        ];
        let mut whole = Session::default();
        history.iter().cloned().for_each(|event| whole.apply(event));
        let sampled = Session::from_first_and_last(history[0].clone(), history.last().cloned());
        for minutes in [0, 25, 29, 30, 59, 60] {
            assert_eq!(sampled.is_live(t(minutes)), whole.is_live(t(minutes)));
        }
        assert_eq!(sampled.idle_deadline(), whole.idle_deadline());
    }
}
