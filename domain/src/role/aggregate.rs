use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::RoleCommand;
use super::errors::RoleError;
use super::events::RoleEvent;
use super::values::{Permission, RoleDescription, RoleName};

/// A named set of permissions. All fields are `None` (or empty) until the role is
/// created; a deleted role keeps its last values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Role {
    id: Option<Uuid>,
    name: Option<RoleName>,
    description: Option<RoleDescription>,
    permissions: BTreeSet<Permission>,
    deleted: bool,
}

/// The single event a command produces, or `None` when it changes nothing.
type Decision = Result<Option<RoleEvent>, RoleError>;

impl Role {
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    pub fn name(&self) -> Option<&RoleName> {
        self.name.as_ref()
    }

    pub fn description(&self) -> Option<&RoleDescription> {
        self.description.as_ref()
    }

    pub fn permissions(&self) -> &BTreeSet<Permission> {
        &self.permissions
    }

    /// Whether the role exists and grants `permission`.
    pub fn grants(&self, permission: Permission) -> bool {
        self.exists() && self.permissions.contains(&permission)
    }

    /// Whether the role was ever created, deleted or not.
    pub fn is_created(&self) -> bool {
        self.id.is_some()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Created and not deleted.
    pub fn exists(&self) -> bool {
        self.is_created() && !self.deleted
    }

    fn decide(&self, command: RoleCommand) -> Result<Vec<RoleEvent>, RoleError> {
        let decision = match command {
            RoleCommand::Create {
                role_id,
                name,
                description,
                permissions,
            } => self.create(RoleEvent::Created {
                role_id,
                name,
                description,
                permissions,
            }),
            RoleCommand::SetPermissions { permissions } => self.set_permissions(permissions),
            RoleCommand::Delete => self.delete(),
        };
        Ok(decision?.into_iter().collect())
    }

    /// A deleted role's id is never reused: creating it again is `AlreadyExists`.
    fn create(&self, created: RoleEvent) -> Decision {
        if self.is_created() {
            return Err(RoleError::AlreadyExists);
        }
        Ok(Some(created))
    }

    fn set_permissions(&self, permissions: BTreeSet<Permission>) -> Decision {
        self.ensure_exists()?;
        if self.permissions == permissions {
            return Ok(None);
        }
        Ok(Some(RoleEvent::PermissionsChanged { permissions }))
    }

    fn delete(&self) -> Decision {
        self.ensure_exists()?;
        let name = self.name.clone().ok_or(RoleError::NotFound)?;
        Ok(Some(RoleEvent::Deleted { name }))
    }

    fn ensure_exists(&self) -> Result<(), RoleError> {
        if self.exists() {
            Ok(())
        } else {
            Err(RoleError::NotFound)
        }
    }
}

impl Aggregate for Role {
    const TYPE: &'static str = "role";
    type Command = RoleCommand;
    type Event = RoleEvent;
    type Error = RoleError;
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
            RoleEvent::Created {
                role_id,
                name,
                description,
                permissions,
            } => {
                self.id = Some(role_id);
                self.name = Some(name);
                self.description = Some(description);
                self.permissions = permissions;
                self.deleted = false;
            }
            RoleEvent::PermissionsChanged { permissions } => self.permissions = permissions,
            RoleEvent::Deleted { .. } => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type RoleTest = TestFramework<Role>;

    fn role_id() -> Uuid {
        Uuid::from_u128(0x0123_4567_89ab_cdef)
    }

    fn name(value: &str) -> RoleName {
        RoleName::parse(value).unwrap()
    }

    fn description(value: &str) -> RoleDescription {
        RoleDescription::parse(value).unwrap()
    }

    fn permissions(values: &[Permission]) -> BTreeSet<Permission> {
        values.iter().copied().collect()
    }

    fn created() -> RoleEvent {
        RoleEvent::Created {
            role_id: role_id(),
            name: name("support"),
            description: description("Support staff"),
            permissions: permissions(&[Permission::UsersRead]),
        }
    }

    fn create_command() -> RoleCommand {
        RoleCommand::Create {
            role_id: role_id(),
            name: name("support"),
            description: description("Support staff"),
            permissions: permissions(&[Permission::UsersRead]),
        }
    }

    fn deleted() -> RoleEvent {
        RoleEvent::Deleted {
            name: name("support"),
        }
    }

    fn non_create_commands() -> Vec<RoleCommand> {
        vec![
            RoleCommand::SetPermissions {
                permissions: permissions(&[Permission::AuditRead]),
            },
            RoleCommand::Delete,
        ]
    }

    #[test]
    fn create_a_new_role() {
        RoleTest::with(())
            .given_no_previous_events()
            .when(create_command())
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn create_a_role_with_no_permissions() {
        RoleTest::with(())
            .given_no_previous_events()
            .when(RoleCommand::Create {
                role_id: role_id(),
                name: name("empty"),
                description: RoleDescription::default(),
                permissions: BTreeSet::new(),
            })
            .then_expect_events(vec![RoleEvent::Created {
                role_id: role_id(),
                name: name("empty"),
                description: RoleDescription::default(),
                permissions: BTreeSet::new(),
            }]);
    }

    #[test]
    fn create_an_existing_role_is_rejected() {
        RoleTest::with(())
            .given(vec![created()])
            .when(create_command())
            .then_expect_error(RoleError::AlreadyExists);
    }

    #[test]
    fn create_a_deleted_role_is_rejected() {
        RoleTest::with(())
            .given(vec![created(), deleted()])
            .when(create_command())
            .then_expect_error(RoleError::AlreadyExists);
    }

    #[test]
    fn any_other_command_on_an_unknown_role_is_not_found() {
        for command in non_create_commands() {
            RoleTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(RoleError::NotFound);
        }
    }

    #[test]
    fn any_other_command_on_a_deleted_role_is_not_found() {
        for command in non_create_commands() {
            RoleTest::with(())
                .given(vec![created(), deleted()])
                .when(command)
                .then_expect_error(RoleError::NotFound);
        }
    }

    #[test]
    fn set_permissions_writes_the_whole_new_set() {
        RoleTest::with(())
            .given(vec![created()])
            .when(RoleCommand::SetPermissions {
                permissions: permissions(&[Permission::UsersRead, Permission::AuditRead]),
            })
            .then_expect_events(vec![RoleEvent::PermissionsChanged {
                permissions: permissions(&[Permission::UsersRead, Permission::AuditRead]),
            }]);
    }

    #[test]
    fn set_permissions_to_the_same_set_writes_nothing() {
        RoleTest::with(())
            .given(vec![created()])
            .when(RoleCommand::SetPermissions {
                permissions: permissions(&[Permission::UsersRead]),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn set_permissions_to_none() {
        RoleTest::with(())
            .given(vec![created()])
            .when(RoleCommand::SetPermissions {
                permissions: BTreeSet::new(),
            })
            .then_expect_events(vec![RoleEvent::PermissionsChanged {
                permissions: BTreeSet::new(),
            }]);
    }

    #[test]
    fn delete_carries_the_name() {
        RoleTest::with(())
            .given(vec![
                created(),
                RoleEvent::PermissionsChanged {
                    permissions: BTreeSet::new(),
                },
            ])
            .when(RoleCommand::Delete)
            .then_expect_events(vec![deleted()]);
    }

    #[test]
    fn accessors_reflect_applied_events() {
        let mut role = Role::default();
        assert!(!role.exists());
        assert!(!role.is_created());
        role.apply(created());
        role.apply(RoleEvent::PermissionsChanged {
            permissions: permissions(&[Permission::RolesRead, Permission::RolesWrite]),
        });
        assert!(role.exists());
        assert_eq!(role.id(), Some(role_id()));
        assert_eq!(role.name(), Some(&name("support")));
        assert_eq!(role.description(), Some(&description("Support staff")));
        assert_eq!(
            role.permissions(),
            &permissions(&[Permission::RolesRead, Permission::RolesWrite])
        );
        assert!(role.grants(Permission::RolesWrite));
        assert!(!role.grants(Permission::UsersRead));
        role.apply(deleted());
        assert!(role.is_deleted());
        assert!(role.is_created());
        assert!(!role.exists());
        assert!(!role.grants(Permission::RolesWrite));
        assert_eq!(role.name(), Some(&name("support")));
    }
}
