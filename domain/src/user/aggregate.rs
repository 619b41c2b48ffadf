use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::UserCommand;
use super::errors::UserError;
use super::events::UserEvent;
use super::values::{DisplayName, Email, PasswordHash};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    #[default]
    Active,
    Deactivated,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
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

    fn ensure_registered(&self) -> Result<(), UserError> {
        if self.is_registered() {
            Ok(())
        } else {
            Err(UserError::NotFound)
        }
    }

    fn ensure_active(&self) -> Result<(), UserError> {
        self.ensure_registered()?;
        match self.status {
            UserStatus::Active => Ok(()),
            UserStatus::Deactivated => Err(UserError::Deactivated),
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
        }
    }
}

#[cfg(test)]
mod tests {
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
            UserEvent::Deactivated,
        ] {
            user.apply(event);
        }
        assert!(user.is_registered());
        assert_eq!(user.id(), Some(user_id()));
        assert_eq!(user.email(), Some(&email("bob@example.com")));
        assert_eq!(user.display_name(), Some(&name("Bob")));
        assert_eq!(user.password_hash(), Some(&hash("two")));
        assert_eq!(user.status(), UserStatus::Deactivated);
    }

    #[test]
    fn user_status_names() {
        assert_eq!(UserStatus::Active.as_str(), "active");
        assert_eq!(UserStatus::Deactivated.as_str(), "deactivated");
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
