//! The lockout policy, without I/O: given a consumed event and what the
//! store holds about its user, what to do. Failures are counted per user
//! only; the api counts them per client address (`app::failed_logins`).

use chrono::{DateTime, TimeDelta, Utc};
use domain::{EventType, SessionEvent, UserEvent};
use uuid::Uuid;

/// The lockout policy, in the units the code uses.
#[derive(Clone, Copy, Debug)]
pub struct LockoutPolicy {
    /// Failures of one user within the window that lock the user.
    pub threshold: u32,
    /// Length of the window a user's failures are counted in.
    pub window: TimeDelta,
    /// How long a lock lasts, from the failure that triggered it.
    pub duration: TimeDelta,
}

/// An event the lockout consumer handles, as the policy sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Consumed {
    LoginFailed {
        user_id: Uuid,
        /// The client's address, stored with the failure for forensics only.
        ip: Option<String>,
        failed_at: DateTime<Utc>,
    },
    Locked {
        user_id: Uuid,
        until: DateTime<Utc>,
        /// When the lock was decided, if its metadata says.
        occurred_at: Option<DateTime<Utc>>,
        /// When the lock was appended to the event store.
        recorded_at: DateTime<Utc>,
    },
    SessionStarted {
        user_id: Uuid,
        started_at: DateTime<Utc>,
    },
    /// The person's data was erased.
    Erased { user_id: Uuid },
}

impl Consumed {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::LoginFailed { .. } => UserEvent::LOGIN_FAILED,
            Self::Locked { .. } => UserEvent::LOCKED,
            Self::SessionStarted { .. } => SessionEvent::STARTED,
            Self::Erased { .. } => UserEvent::ERASED,
        }
    }

    pub fn user_id(&self) -> Uuid {
        match self {
            Self::LoginFailed { user_id, .. }
            | Self::Locked { user_id, .. }
            | Self::SessionStarted { user_id, .. }
            | Self::Erased { user_id } => *user_id,
        }
    }
}

/// What the store holds about a failed login's user when it is judged:
/// every stored failure whose window holds it (itself, and any failure less
/// than a window after it, consumed earlier), each with the failures its
/// own window counts, oldest first. A failure may be consumed after later
/// ones (two workers share the queue, a batch is redelivered), so each of
/// those windows is judged again when it arrives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stored {
    pub windows: Vec<CountedWindow>,
}

/// A stored failure and the failures of its user in the window ending at it,
/// since the user's count last restarted (itself included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CountedWindow {
    pub ends_at: DateTime<Utc>,
    pub failures: u32,
}

/// The windows a failure at `at` falls in: those ending in
/// `[at, at + length)`, each counting the failures in `(end - length, end]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub at: DateTime<Utc>,
    pub length: TimeDelta,
}

/// What the policy calls for. The first changes the worker's own tables;
/// the others are commands on the aggregates.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The user's failures up to `at` no longer count (never moves back).
    RestartCount { user_id: Uuid, at: DateTime<Utc> },
    /// Lock the user: the failure brought their count to `failures`.
    Lock {
        user_id: Uuid,
        until: DateTime<Utc>,
        failures: u32,
    },
    /// A lock was recorded: make sure the user has no active session.
    RevokeSessions { user_id: Uuid },
    /// The user was erased: drop what the worker holds about them (the
    /// client addresses of their failures among it).
    Forget { user_id: Uuid },
}

impl LockoutPolicy {
    /// The windows a failure at `at` is counted in.
    pub fn window(&self, at: DateTime<Utc>) -> Window {
        Window {
            at,
            length: self.window,
        }
    }

    /// What to do about `event`, given what was `stored` before it and the
    /// time `now`. The same inputs always decide the same, so a redelivered
    /// event repeats actions that then write nothing.
    pub fn decide(&self, event: &Consumed, stored: &Stored, now: DateTime<Utc>) -> Vec<Action> {
        match event {
            Consumed::LoginFailed { user_id, .. } => self.login_failed(*user_id, stored, now),
            Consumed::Locked {
                user_id,
                until,
                occurred_at,
                recorded_at,
            } => locked(*user_id, *until, *occurred_at, *recorded_at, now),
            // A successful login restarts the user's count.
            Consumed::SessionStarted {
                user_id,
                started_at,
            } => vec![Action::RestartCount {
                user_id: *user_id,
                at: *started_at,
            }],
            Consumed::Erased { user_id } => vec![Action::Forget { user_id: *user_id }],
        }
    }

    /// The oldest window that reaches the threshold locks from its end,
    /// as it would have had the failures been consumed in order.
    fn login_failed(&self, user_id: Uuid, stored: &Stored, now: DateTime<Utc>) -> Vec<Action> {
        let mut actions = Vec::new();
        let full = stored
            .windows
            .iter()
            .find(|window| window.failures >= self.threshold);
        if let Some(window) = full {
            let until = window.ends_at + self.duration;
            // Consumed too late, the lock would already be over: not recorded.
            if until > now {
                actions.push(Action::Lock {
                    user_id,
                    until,
                    failures: window.failures,
                });
            }
            // The lock restarts the count: later failures (made before the
            // lock existed) start a new one.
            actions.push(Action::RestartCount {
                user_id,
                at: window.ends_at,
            });
        }
        actions
    }
}

/// A lock (from this worker or elsewhere) restarts the user's count from
/// when it was recorded (or decided, if that is later) and, while it lasts,
/// ends their sessions.
fn locked(
    user_id: Uuid,
    until: DateTime<Utc>,
    occurred_at: Option<DateTime<Utc>>,
    recorded_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let at = occurred_at.unwrap_or(recorded_at).max(recorded_at);
    let mut actions = vec![Action::RestartCount { user_id, at }];
    if until > now {
        actions.push(Action::RevokeSessions { user_id });
    }
    actions
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            threshold: 3,
            window: TimeDelta::seconds(60),
            duration: TimeDelta::seconds(300),
        }
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap() + TimeDelta::seconds(seconds)
    }

    fn user() -> Uuid {
        Uuid::from_u128(7)
    }

    fn failure(at: i64) -> Consumed {
        Consumed::LoginFailed {
            user_id: user(),
            ip: Some("203.0.113.7".to_owned()),
            failed_at: t(at),
        }
    }

    /// Windows ending at `(seconds, failures)`, oldest first.
    fn stored(windows: &[(i64, u32)]) -> Stored {
        Stored {
            windows: windows
                .iter()
                .map(|&(ends_at, failures)| CountedWindow {
                    ends_at: t(ends_at),
                    failures,
                })
                .collect(),
        }
    }

    fn lock(until: i64, failures: u32) -> Action {
        Action::Lock {
            user_id: user(),
            until: t(until),
            failures,
        }
    }

    fn restart(at: i64) -> Action {
        Action::RestartCount {
            user_id: user(),
            at: t(at),
        }
    }

    #[test]
    fn a_failure_is_counted_in_the_windows_ending_up_to_a_window_after_it() {
        assert_eq!(
            policy().window(t(100)),
            Window {
                at: t(100),
                length: TimeDelta::seconds(60)
            }
        );
    }

    #[test]
    fn failed_logins() {
        // (case, event, stored, now, expected actions)
        let cases = [
            (
                "below the threshold",
                failure(0),
                stored(&[(0, 2)]),
                0,
                vec![],
            ),
            (
                "the nth failure locks from its own time and restarts the count",
                failure(0),
                stored(&[(0, 3)]),
                0,
                vec![lock(300, 3), restart(0)],
            ),
            (
                "over the threshold (a racing batch) locks with the count",
                failure(0),
                stored(&[(0, 4)]),
                0,
                vec![lock(300, 4), restart(0)],
            ),
            (
                "a lock that has run out is not recorded, the count still restarts",
                failure(0),
                stored(&[(0, 3)]),
                300,
                vec![restart(0)],
            ),
            (
                "consumed after a later failure: the later window it completes locks",
                failure(0),
                stored(&[(0, 1), (2, 3)]),
                0,
                vec![lock(302, 3), restart(2)],
            ),
            (
                "of several full windows the oldest locks, as in order it would have",
                failure(0),
                stored(&[(0, 2), (1, 3), (2, 4)]),
                0,
                vec![lock(301, 3), restart(1)],
            ),
            (
                "no window full",
                failure(0),
                stored(&[(0, 2), (5, 2)]),
                0,
                vec![],
            ),
        ];
        for (case, event, stored, now, expected) in cases {
            assert_eq!(policy().decide(&event, &stored, t(now)), expected, "{case}");
        }
    }

    #[test]
    fn locks_and_logins() {
        let locked = |until, occurred_at: Option<i64>, recorded_at| Consumed::Locked {
            user_id: user(),
            until: t(until),
            occurred_at: occurred_at.map(t),
            recorded_at: t(recorded_at),
        };
        let revoke = Action::RevokeSessions { user_id: user() };
        // (case, event, now, expected actions)
        let cases = [
            (
                "a lasting lock restarts the count when recorded and revokes sessions",
                locked(300, Some(-1), 0),
                0,
                vec![restart(0), revoke.clone()],
            ),
            (
                "decided after it was recorded: restarts from the decision",
                locked(300, Some(2), 0),
                0,
                vec![restart(2), revoke],
            ),
            (
                "without a decision time: from when it was recorded",
                locked(300, None, 5),
                5,
                vec![restart(5), Action::RevokeSessions { user_id: user() }],
            ),
            (
                "a lock that ran out revokes nothing",
                locked(300, None, 0),
                300,
                vec![restart(0)],
            ),
            (
                "a successful login restarts the count",
                Consumed::SessionStarted {
                    user_id: user(),
                    started_at: t(-3),
                },
                0,
                vec![restart(-3)],
            ),
        ];
        for (case, event, now, expected) in cases {
            let stored = Stored::default();
            assert_eq!(policy().decide(&event, &stored, t(now)), expected, "{case}");
        }
    }

    #[test]
    fn given_an_erased_user_then_the_worker_forgets_them() {
        let erased = Consumed::Erased { user_id: user() };
        assert_eq!(erased.event_type(), UserEvent::ERASED);
        assert_eq!(
            policy().decide(&erased, &Stored::default(), t(0)),
            vec![Action::Forget { user_id: user() }]
        );
    }
}
