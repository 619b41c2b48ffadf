use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::UserCommand;
use super::email::Email;
use super::errors::UserError;
use super::events::UserEvent;
use super::values::{DisplayName, PasswordHash};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    #[default]
    Active,
    Deactivated,
    /// The person's data was erased; final.
    Erased,
}

impl UserStatus {
    pub const ALL: [UserStatus; 3] = [Self::Active, Self::Deactivated, Self::Erased];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
            Self::Erased => "erased",
        }
    }
}

/// A user account. All fields are `None` until the user is registered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct User {
    id: Option<Uuid>,
    email: Option<Email>,
    display_name: Option<DisplayName>,
    password_hash: Option<PasswordHash>,
    status: UserStatus,
    #[serde(default)]
    roles: BTreeSet<Uuid>,
    /// When the last lock runs out; `None` when never locked or unlocked by an operator.
    #[serde(default)]
    locked_until: Option<DateTime<Utc>>,
}

/// The single event a command produces, or `None` when it changes nothing.
type Decision = Result<Option<UserEvent>, UserError>;

impl User {
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    pub fn email(&self) -> Option<&Email> {
        self.email.as_ref()
    }

    pub fn display_name(&self) -> Option<&DisplayName> {
        self.display_name.as_ref()
    }

    pub fn password_hash(&self) -> Option<&PasswordHash> {
        self.password_hash.as_ref()
    }

    pub fn status(&self) -> UserStatus {
        self.status
    }

    pub fn is_registered(&self) -> bool {
        self.id.is_some()
    }

    pub fn roles(&self) -> &BTreeSet<Uuid> {
        &self.roles
    }

    /// When the last lock ends, even if that is already past: see [`User::is_locked_at`].
    pub fn locked_until(&self) -> Option<DateTime<Utc>> {
        self.locked_until
    }

    /// A lock ends by itself at its `until`.
    pub fn is_locked_at(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    /// Whether the user may log in at `now`, password aside.
    pub fn check_can_log_in(&self, now: DateTime<Utc>) -> Result<(), UserError> {
        self.ensure_active()?;
        match self.locked_until {
            Some(until) if now < until => Err(UserError::Locked { until }),
            _ => Ok(()),
        }
    }

    fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        let decision = match command {
            UserCommand::Register {
                user_id,
                email,
                display_name,
                password_hash,
            } => self.register(UserEvent::Registered {
                user_id,
                email,
                display_name,
                password_hash,
            }),
            UserCommand::ChangeEmail { email } => self.change_email(email),
            UserCommand::ChangeDisplayName { display_name } => {
                self.change_display_name(display_name)
            }
            UserCommand::UpdateProfile {
                email,
                display_name,
            } => return self.update_profile(email, display_name),
            UserCommand::ChangePassword { password_hash } => {
                self.ensure_active()?;
                Ok(Some(UserEvent::PasswordChanged { password_hash }))
            }
            UserCommand::Deactivate => self.deactivate(),
            UserCommand::Reactivate => self.reactivate(),
            UserCommand::AssignRole { role_id } => self.assign_role(role_id),
            UserCommand::UnassignRole { role_id } => self.unassign_role(role_id),
            UserCommand::RecordLoginFailure { ip, at } => self.record_login_failure(ip, at),
            UserCommand::Lock {
                until,
                failures,
                now,
            } => self.lock(until, failures, now),
            UserCommand::Unlock { now } => self.unlock(now),
            UserCommand::RehashPassword { password_hash } => {
                self.ensure_registered()?;
                Ok(Some(UserEvent::PasswordRehashed { password_hash }))
            }
            UserCommand::Erase { now } => self.erase(now),
        };
        Ok(decision?.into_iter().collect())
    }

    fn update_profile(
        &self,
        email: Option<Email>,
        display_name: Option<DisplayName>,
    ) -> Result<Vec<UserEvent>, UserError> {
        self.ensure_active()?;
        let email_changed = email.map(|email| self.change_email(email)).transpose()?;
        let name_changed = display_name
            .map(|name| self.change_display_name(name))
            .transpose()?;
        Ok(email_changed
            .flatten()
            .into_iter()
            .chain(name_changed.flatten())
            .collect())
    }

    fn register(&self, registered: UserEvent) -> Decision {
        if self.status == UserStatus::Erased {
            return Err(UserError::Erased);
        }
        if self.is_registered() {
            return Err(UserError::AlreadyRegistered);
        }
        Ok(Some(registered))
    }

    fn change_email(&self, email: Email) -> Decision {
        self.ensure_active()?;
        let previous_email = self.email.clone().ok_or(UserError::NotFound)?;
        if previous_email.uniqueness_key() == email.uniqueness_key() {
            return Ok(None);
        }
        Ok(Some(UserEvent::EmailChanged {
            email,
            previous_email,
        }))
    }

    fn change_display_name(&self, display_name: DisplayName) -> Decision {
        self.ensure_active()?;
        if self.display_name.as_ref() == Some(&display_name) {
            return Ok(None);
        }
        Ok(Some(UserEvent::DisplayNameChanged { display_name }))
    }

    fn deactivate(&self) -> Decision {
        self.ensure_registered()?;
        if self.status == UserStatus::Deactivated {
            return Err(UserError::AlreadyDeactivated);
        }
        Ok(Some(UserEvent::Deactivated))
    }

    fn reactivate(&self) -> Decision {
        self.ensure_registered()?;
        if self.status == UserStatus::Active {
            return Err(UserError::AlreadyActive);
        }
        Ok(Some(UserEvent::Reactivated))
    }

    fn assign_role(&self, role_id: Uuid) -> Decision {
        self.ensure_active()?;
        if self.roles.contains(&role_id) {
            return Ok(None);
        }
        Ok(Some(UserEvent::RoleAssigned { role_id }))
    }

    /// Allowed on a deactivated user: taking a privilege away is always safe.
    fn unassign_role(&self, role_id: Uuid) -> Decision {
        self.ensure_registered()?;
        if !self.roles.contains(&role_id) {
            return Err(UserError::RoleNotAssigned);
        }
        Ok(Some(UserEvent::RoleUnassigned { role_id }))
    }

    /// Nothing is written while locked, so an attack cannot grow the stream.
    fn record_login_failure(&self, ip: Option<String>, at: DateTime<Utc>) -> Decision {
        self.ensure_registered()?;
        if self.is_locked_at(at) {
            return Ok(None);
        }
        Ok(Some(UserEvent::LoginFailed { ip, failed_at: at }))
    }

    fn lock(&self, until: DateTime<Utc>, failures: u32, now: DateTime<Utc>) -> Decision {
        self.ensure_registered()?;
        if until <= now {
            return Err(UserError::InvalidLockPeriod);
        }
        if self.locked_until.is_some_and(|current| current >= until) {
            return Ok(None);
        }
        Ok(Some(UserEvent::Locked { until, failures }))
    }

    fn unlock(&self, now: DateTime<Utc>) -> Decision {
        self.ensure_registered()?;
        if !self.is_locked_at(now) {
            return Err(UserError::NotLocked);
        }
        Ok(Some(UserEvent::Unlocked))
    }

    /// Erasing an erased user again writes nothing: a retry is harmless.
    fn erase(&self, now: DateTime<Utc>) -> Decision {
        if !self.is_registered() {
            return Err(UserError::NotFound);
        }
        if self.status == UserStatus::Erased {
            return Ok(None);
        }
        Ok(Some(UserEvent::Erased { erased_at: now }))
    }

    /// Registered and not erased: an erased user takes no command.
    fn ensure_registered(&self) -> Result<(), UserError> {
        match (self.is_registered(), self.status) {
            (false, _) => Err(UserError::NotFound),
            (true, UserStatus::Erased) => Err(UserError::Erased),
            (true, _) => Ok(()),
        }
    }

    fn ensure_active(&self) -> Result<(), UserError> {
        self.ensure_registered()?;
        match self.status {
            UserStatus::Active => Ok(()),
            UserStatus::Deactivated => Err(UserError::Deactivated),
            UserStatus::Erased => Err(UserError::Erased),
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::Registered {
                user_id,
                email,
                display_name,
                password_hash,
            } => {
                self.id = Some(user_id);
                self.email = Some(email);
                self.display_name = Some(display_name);
                self.password_hash = Some(password_hash);
                self.status = UserStatus::Active;
            }
            UserEvent::EmailChanged { email, .. } => self.email = Some(email),
            UserEvent::DisplayNameChanged { display_name } => {
                self.display_name = Some(display_name);
            }
            UserEvent::PasswordChanged { password_hash } => {
                self.password_hash = Some(password_hash);
            }
            UserEvent::Deactivated => self.status = UserStatus::Deactivated,
            UserEvent::Reactivated => self.status = UserStatus::Active,
            UserEvent::RoleAssigned { role_id } => {
                self.roles.insert(role_id);
            }
            UserEvent::RoleUnassigned { role_id } => {
                self.roles.remove(&role_id);
            }
            UserEvent::LoginFailed { .. } => {}
            UserEvent::Locked { until, .. } => self.locked_until = Some(until),
            UserEvent::Unlocked => self.locked_until = None,
            UserEvent::PasswordRehashed { password_hash } => {
                self.password_hash = Some(password_hash);
            }
            UserEvent::Erased { .. } => self.forget(),
        }
    }
}

impl User {
    /// What an erasure leaves: the id, the roles held (history), and
    /// markers where the person's values were.
    fn forget(&mut self) {
        self.status = UserStatus::Erased;
        self.email = Some(Email::erased());
        self.display_name = Some(DisplayName::erased());
        self.password_hash = None;
        self.locked_until = None;
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};
    use cqrs_es::test::TestFramework;

    use super::*;

    type UserTest = TestFramework<User>;

    fn user_id() -> Uuid {
        Uuid::from_u128(0x0123_4567_89ab_cdef)
    }

    fn email(value: &str) -> Email {
        Email::parse(value).unwrap()
    }

    fn name(value: &str) -> DisplayName {
        DisplayName::parse(value).unwrap()
    }

    fn hash(value: &str) -> PasswordHash {
        PasswordHash::new(format!("$argon2id$v=19$m=19456,t=2,p=1${value}"))
    }

    fn role() -> Uuid {
        Uuid::from_u128(0xaaaa)
    }

    fn other_role() -> Uuid {
        Uuid::from_u128(0xbbbb)
    }

    /// A fixed instant plus `minutes`.
    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    fn locked_until(minutes: i64) -> UserEvent {
        UserEvent::Locked {
            until: t(minutes),
            failures: 5,
        }
    }

    fn registered() -> UserEvent {
        UserEvent::Registered {
            user_id: user_id(),
            email: email("alice@example.com"),
            display_name: name("Alice"),
            password_hash: hash("one"),
        }
    }

    fn register_command() -> UserCommand {
        UserCommand::Register {
            user_id: user_id(),
            email: email("alice@example.com"),
            display_name: name("Alice"),
            password_hash: hash("one"),
        }
    }

    fn non_register_commands() -> Vec<UserCommand> {
        vec![
            UserCommand::ChangeEmail {
                email: email("bob@example.com"),
            },
            UserCommand::ChangeDisplayName {
                display_name: name("Bob"),
            },
            UserCommand::UpdateProfile {
                email: Some(email("bob@example.com")),
                display_name: None,
            },
            UserCommand::ChangePassword {
                password_hash: hash("two"),
            },
            UserCommand::Deactivate,
            UserCommand::Reactivate,
            UserCommand::AssignRole { role_id: role() },
            UserCommand::UnassignRole { role_id: role() },
            UserCommand::RecordLoginFailure { ip: None, at: t(0) },
            UserCommand::Lock {
                until: t(15),
                failures: 5,
                now: t(0),
            },
            UserCommand::Unlock { now: t(0) },
            UserCommand::RehashPassword {
                password_hash: hash("two"),
            },
        ]
    }

    #[test]
    fn register_a_new_user() {
        UserTest::with(())
            .given_no_previous_events()
            .when(register_command())
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn register_an_existing_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered()])
            .when(register_command())
            .then_expect_error(UserError::AlreadyRegistered);
    }

    #[test]
    fn register_a_deactivated_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::Deactivated])
            .when(register_command())
            .then_expect_error(UserError::AlreadyRegistered);
    }

    #[test]
    fn any_other_command_on_an_unregistered_user_is_not_found() {
        for command in non_register_commands() {
            UserTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(UserError::NotFound);
        }
    }

    #[test]
    fn change_email() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::ChangeEmail {
                email: email("bob@example.com"),
            })
            .then_expect_events(vec![UserEvent::EmailChanged {
                email: email("bob@example.com"),
                previous_email: email("alice@example.com"),
            }]);
    }

    #[test]
    fn change_email_to_the_same_address_in_another_case_writes_nothing() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::ChangeEmail {
                email: email("ALICE@Example.com"),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn change_email_of_a_deactivated_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::Deactivated])
            .when(UserCommand::ChangeEmail {
                email: email("bob@example.com"),
            })
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn update_profile_changes_both_values_in_one_command() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::UpdateProfile {
                email: Some(email("bob@example.com")),
                display_name: Some(name("Bob")),
            })
            .then_expect_events(vec![
                UserEvent::EmailChanged {
                    email: email("bob@example.com"),
                    previous_email: email("alice@example.com"),
                },
                UserEvent::DisplayNameChanged {
                    display_name: name("Bob"),
                },
            ]);
    }

    #[test]
    fn update_profile_writes_only_what_changes() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::UpdateProfile {
                email: Some(email("alice@example.com")),
                display_name: Some(name("Bob")),
            })
            .then_expect_events(vec![UserEvent::DisplayNameChanged {
                display_name: name("Bob"),
            }]);
    }

    #[test]
    fn update_profile_of_a_deactivated_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::Deactivated])
            .when(UserCommand::UpdateProfile {
                email: None,
                display_name: Some(name("Bob")),
            })
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn change_display_name() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::ChangeDisplayName {
                display_name: name("Alice Smith"),
            })
            .then_expect_events(vec![UserEvent::DisplayNameChanged {
                display_name: name("Alice Smith"),
            }]);
    }

    #[test]
    fn change_display_name_to_the_same_name_writes_nothing() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::ChangeDisplayName {
                display_name: name("Alice"),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn change_display_name_of_a_deactivated_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::Deactivated])
            .when(UserCommand::ChangeDisplayName {
                display_name: name("Alice Smith"),
            })
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn change_password_always_writes_an_event() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::ChangePassword {
                password_hash: hash("one"),
            })
            .then_expect_events(vec![UserEvent::PasswordChanged {
                password_hash: hash("one"),
            }]);
    }

    #[test]
    fn change_password_of_a_deactivated_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::Deactivated])
            .when(UserCommand::ChangePassword {
                password_hash: hash("two"),
            })
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn deactivate() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::Deactivate)
            .then_expect_events(vec![UserEvent::Deactivated]);
    }

    #[test]
    fn deactivate_a_deactivated_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::Deactivated])
            .when(UserCommand::Deactivate)
            .then_expect_error(UserError::AlreadyDeactivated);
    }

    #[test]
    fn reactivate() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::Deactivated])
            .when(UserCommand::Reactivate)
            .then_expect_events(vec![UserEvent::Reactivated]);
    }

    #[test]
    fn reactivate_an_active_user_is_rejected() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::Deactivated,
                UserEvent::Reactivated,
            ])
            .when(UserCommand::Reactivate)
            .then_expect_error(UserError::AlreadyActive);
    }

    #[test]
    fn changes_are_allowed_again_after_reactivation() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::Deactivated,
                UserEvent::Reactivated,
            ])
            .when(UserCommand::ChangeDisplayName {
                display_name: name("Alice Smith"),
            })
            .then_expect_events(vec![UserEvent::DisplayNameChanged {
                display_name: name("Alice Smith"),
            }]);
    }

    #[test]
    fn assign_role() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::AssignRole { role_id: role() })
            .then_expect_events(vec![UserEvent::RoleAssigned { role_id: role() }]);
    }

    #[test]
    fn assign_a_role_already_held_writes_nothing() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::RoleAssigned { role_id: role() },
            ])
            .when(UserCommand::AssignRole { role_id: role() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn assign_role_to_a_deactivated_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::Deactivated])
            .when(UserCommand::AssignRole { role_id: role() })
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn unassign_role() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::RoleAssigned { role_id: role() },
            ])
            .when(UserCommand::UnassignRole { role_id: role() })
            .then_expect_events(vec![UserEvent::RoleUnassigned { role_id: role() }]);
    }

    #[test]
    fn unassign_a_role_not_held_is_rejected() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::RoleAssigned { role_id: role() },
            ])
            .when(UserCommand::UnassignRole {
                role_id: other_role(),
            })
            .then_expect_error(UserError::RoleNotAssigned);
    }

    #[test]
    fn unassign_a_role_already_unassigned_is_rejected() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::RoleAssigned { role_id: role() },
                UserEvent::RoleUnassigned { role_id: role() },
            ])
            .when(UserCommand::UnassignRole { role_id: role() })
            .then_expect_error(UserError::RoleNotAssigned);
    }

    #[test]
    fn unassign_role_from_a_deactivated_user_is_allowed() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::RoleAssigned { role_id: role() },
                UserEvent::Deactivated,
            ])
            .when(UserCommand::UnassignRole { role_id: role() })
            .then_expect_events(vec![UserEvent::RoleUnassigned { role_id: role() }]);
    }

    #[test]
    fn record_login_failure() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::RecordLoginFailure {
                ip: Some("203.0.113.7".into()),
                at: t(0),
            })
            .then_expect_events(vec![UserEvent::LoginFailed {
                ip: Some("203.0.113.7".into()),
                failed_at: t(0),
            }]);
    }

    #[test]
    fn record_login_failure_while_locked_writes_nothing() {
        UserTest::with(())
            .given(vec![registered(), locked_until(15)])
            .when(UserCommand::RecordLoginFailure {
                ip: None,
                at: t(14),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn record_login_failure_after_the_lock_ran_out() {
        UserTest::with(())
            .given(vec![registered(), locked_until(15)])
            .when(UserCommand::RecordLoginFailure {
                ip: None,
                at: t(15),
            })
            .then_expect_events(vec![UserEvent::LoginFailed {
                ip: None,
                failed_at: t(15),
            }]);
    }

    #[test]
    fn lock() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::Lock {
                until: t(15),
                failures: 5,
                now: t(0),
            })
            .then_expect_events(vec![locked_until(15)]);
    }

    #[test]
    fn lock_ending_now_or_earlier_is_rejected() {
        for until in [t(0), t(-1)] {
            UserTest::with(())
                .given(vec![registered()])
                .when(UserCommand::Lock {
                    until,
                    failures: 5,
                    now: t(0),
                })
                .then_expect_error(UserError::InvalidLockPeriod);
        }
    }

    #[test]
    fn lock_within_a_longer_lock_writes_nothing() {
        for until in [t(10), t(15)] {
            UserTest::with(())
                .given(vec![registered(), locked_until(15)])
                .when(UserCommand::Lock {
                    until,
                    failures: 6,
                    now: t(1),
                })
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn lock_extends_a_shorter_lock() {
        UserTest::with(())
            .given(vec![registered(), locked_until(15)])
            .when(UserCommand::Lock {
                until: t(30),
                failures: 10,
                now: t(1),
            })
            .then_expect_events(vec![UserEvent::Locked {
                until: t(30),
                failures: 10,
            }]);
    }

    #[test]
    fn unlock() {
        UserTest::with(())
            .given(vec![registered(), locked_until(15)])
            .when(UserCommand::Unlock { now: t(1) })
            .then_expect_events(vec![UserEvent::Unlocked]);
    }

    #[test]
    fn unlock_a_user_never_locked_is_rejected() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::Unlock { now: t(1) })
            .then_expect_error(UserError::NotLocked);
    }

    #[test]
    fn unlock_after_the_lock_ran_out_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), locked_until(15)])
            .when(UserCommand::Unlock { now: t(15) })
            .then_expect_error(UserError::NotLocked);
    }

    #[test]
    fn unlock_an_unlocked_user_is_rejected() {
        UserTest::with(())
            .given(vec![registered(), locked_until(15), UserEvent::Unlocked])
            .when(UserCommand::Unlock { now: t(1) })
            .then_expect_error(UserError::NotLocked);
    }

    #[test]
    fn rehash_password_is_not_a_password_change() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::RehashPassword {
                password_hash: hash("rehashed"),
            })
            .then_expect_events(vec![UserEvent::PasswordRehashed {
                password_hash: hash("rehashed"),
            }]);
    }

    fn erased() -> UserEvent {
        UserEvent::Erased { erased_at: t(5) }
    }

    #[test]
    fn erase_a_registered_user() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::Erase { now: t(5) })
            .then_expect_events(vec![erased()]);
    }

    #[test]
    fn erase_a_deactivated_or_locked_user() {
        for before in [UserEvent::Deactivated, locked_until(15)] {
            UserTest::with(())
                .given(vec![registered(), before])
                .when(UserCommand::Erase { now: t(5) })
                .then_expect_events(vec![erased()]);
        }
    }

    #[test]
    fn erase_an_erased_user_again_writes_nothing() {
        UserTest::with(())
            .given(vec![registered(), erased()])
            .when(UserCommand::Erase { now: t(9) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn erase_an_unregistered_user_is_not_found() {
        UserTest::with(())
            .given_no_previous_events()
            .when(UserCommand::Erase { now: t(5) })
            .then_expect_error(UserError::NotFound);
    }

    #[test]
    fn every_other_command_on_an_erased_user_is_refused() {
        for command in non_register_commands()
            .into_iter()
            .chain([register_command()])
        {
            UserTest::with(())
                .given(vec![registered(), erased()])
                .when(command)
                .then_expect_error(UserError::Erased);
        }
    }

    #[test]
    fn an_erased_user_cannot_log_in_and_holds_no_personal_value() {
        let mut user = User::default();
        for event in [registered(), locked_until(15), erased()] {
            user.apply(event);
        }
        assert_eq!(user.check_can_log_in(t(30)), Err(UserError::Erased));
        assert_eq!(user.status(), UserStatus::Erased);
        assert_eq!(user.email(), Some(&Email::erased()));
        assert_eq!(
            user.display_name().map(DisplayName::as_str),
            Some(crate::ERASED)
        );
        assert!(user.password_hash().is_none());
        assert_eq!(user.locked_until(), None);
        assert_eq!(user.id(), Some(user_id()));
    }

    #[test]
    fn lock_state_follows_the_clock() {
        let mut user = User::default();
        user.apply(registered());
        assert_eq!(user.locked_until(), None);
        assert!(!user.is_locked_at(t(0)));
        user.apply(locked_until(15));
        assert_eq!(user.locked_until(), Some(t(15)));
        assert!(user.is_locked_at(t(0)));
        assert!(user.is_locked_at(t(14)));
        assert!(!user.is_locked_at(t(15)));
        user.apply(UserEvent::Unlocked);
        assert_eq!(user.locked_until(), None);
        assert!(!user.is_locked_at(t(0)));
    }

    #[test]
    fn check_can_log_in_of_an_unregistered_user_is_not_found() {
        assert_eq!(
            User::default().check_can_log_in(t(0)),
            Err(UserError::NotFound)
        );
    }

    #[test]
    fn check_can_log_in_of_a_deactivated_user_is_rejected() {
        let mut user = User::default();
        user.apply(registered());
        user.apply(UserEvent::Deactivated);
        assert_eq!(user.check_can_log_in(t(0)), Err(UserError::Deactivated));
    }

    #[test]
    fn check_can_log_in_while_locked_is_rejected_until_the_lock_ends() {
        let mut user = User::default();
        user.apply(registered());
        assert_eq!(user.check_can_log_in(t(0)), Ok(()));
        user.apply(locked_until(15));
        assert_eq!(
            user.check_can_log_in(t(14)),
            Err(UserError::Locked { until: t(15) })
        );
        assert_eq!(user.check_can_log_in(t(15)), Ok(()));
    }

    #[test]
    fn roles_follow_assignments() {
        let mut user = User::default();
        for event in [
            registered(),
            UserEvent::RoleAssigned { role_id: role() },
            UserEvent::RoleAssigned {
                role_id: other_role(),
            },
            UserEvent::RoleUnassigned { role_id: role() },
        ] {
            user.apply(event);
        }
        assert_eq!(user.roles(), &BTreeSet::from([other_role()]));
    }

    #[test]
    fn snapshot_without_roles_or_lock_deserializes() {
        let mut user = User::default();
        user.apply(registered());
        let mut value = serde_json::to_value(&user).unwrap();
        let object = value.as_object_mut().unwrap();
        object.remove("roles");
        object.remove("locked_until");
        let back: User = serde_json::from_value(value).unwrap();
        assert!(back.roles().is_empty());
        assert_eq!(back.locked_until(), None);
    }

    #[test]
    fn accessors_reflect_applied_events() {
        let mut user = User::default();
        assert!(!user.is_registered());
        assert_eq!(user.status(), UserStatus::Active);
        for event in [
            registered(),
            UserEvent::EmailChanged {
                email: email("bob@example.com"),
                previous_email: email("alice@example.com"),
            },
            UserEvent::DisplayNameChanged {
                display_name: name("Bob"),
            },
            UserEvent::PasswordChanged {
                password_hash: hash("two"),
            },
            UserEvent::PasswordRehashed {
                password_hash: hash("three"),
            },
            UserEvent::Deactivated,
        ] {
            user.apply(event);
        }
        assert!(user.is_registered());
        assert_eq!(user.id(), Some(user_id()));
        assert_eq!(user.email(), Some(&email("bob@example.com")));
        assert_eq!(user.display_name(), Some(&name("Bob")));
        assert_eq!(user.password_hash(), Some(&hash("three")));
        assert_eq!(user.status(), UserStatus::Deactivated);
    }

    #[test]
    fn user_status_names() {
        assert_eq!(UserStatus::Active.as_str(), "active");
        assert_eq!(UserStatus::Deactivated.as_str(), "deactivated");
        assert_eq!(UserStatus::Erased.as_str(), "erased");
        for status in UserStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(
            serde_json::to_string(&UserStatus::Deactivated).unwrap(),
            "\"deactivated\""
        );
        assert_eq!(
            serde_json::from_str::<UserStatus>("\"active\"").unwrap(),
            UserStatus::Active
        );
    }
}
