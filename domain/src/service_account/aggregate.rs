use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{NewKey, ServiceAccountCommand};
use super::errors::ServiceAccountError;
use super::events::ServiceAccountEvent;
use super::values::{ServiceAccountDescription, ServiceAccountName};
use crate::Permission;

/// Whether an account may act.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAccountStatus {
    #[default]
    Active,
    Disabled,
    /// For good: no command applies any more.
    Erased,
}

impl ServiceAccountStatus {
    /// The status's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Erased => "erased",
        }
    }
}

/// A key as the account knows it: its secret's digest is not kept here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    pub description: ServiceAccountDescription,
    pub scope: BTreeSet<Permission>,
    /// The earlier of its own expiry and the end of a rotation's overlap.
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
    pub replaced_by: Option<Uuid>,
}

impl IssuedKey {
    /// Whether the key may still be revoked or rotated: not revoked and
    /// not already replaced. (Whether it still works also depends on the
    /// time, which the caller knows.)
    fn is_current(&self) -> bool {
        !self.revoked && self.replaced_by.is_none()
    }
}

/// A machine's identity. Fields are empty until it is created; an erased
/// account keeps its id and refuses every command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceAccount {
    id: Option<Uuid>,
    name: Option<ServiceAccountName>,
    description: ServiceAccountDescription,
    status: ServiceAccountStatus,
    roles: BTreeSet<Uuid>,
    keys: BTreeMap<Uuid, IssuedKey>,
}

impl ServiceAccount {
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    pub fn name(&self) -> Option<&ServiceAccountName> {
        self.name.as_ref()
    }

    pub fn description(&self) -> &ServiceAccountDescription {
        &self.description
    }

    /// Every key ever issued, by id.
    pub fn keys(&self) -> &BTreeMap<Uuid, IssuedKey> {
        &self.keys
    }

    pub fn status(&self) -> ServiceAccountStatus {
        self.status
    }

    pub fn roles(&self) -> &BTreeSet<Uuid> {
        &self.roles
    }

    pub fn key(&self, key_id: Uuid) -> Option<&IssuedKey> {
        self.keys.get(&key_id)
    }

    /// Created and not erased.
    pub fn exists(&self) -> bool {
        self.id.is_some() && self.status != ServiceAccountStatus::Erased
    }

    fn decide(
        &self,
        command: ServiceAccountCommand,
    ) -> Result<Vec<ServiceAccountEvent>, ServiceAccountError> {
        use ServiceAccountCommand as C;
        use ServiceAccountEvent as E;
        if let C::Create {
            service_account_id,
            name,
            description,
        } = command
        {
            if self.id.is_some() {
                return Err(ServiceAccountError::AlreadyExists);
            }
            return Ok(vec![E::Created {
                service_account_id,
                name,
                description,
            }]);
        }
        self.ensure_exists()?;
        match command {
            C::Create { .. } => unreachable!("handled above"),
            C::Update {
                name,
                description,
                enabled,
            } => Ok(self.changes(name, description, enabled)),
            C::AssignRole { role_id } => match self.roles.contains(&role_id) {
                true => Err(ServiceAccountError::RoleAlreadyAssigned),
                false => Ok(vec![E::RoleAssigned { role_id }]),
            },
            C::UnassignRole { role_id } => match self.roles.contains(&role_id) {
                true => Ok(vec![E::RoleUnassigned { role_id }]),
                false => Err(ServiceAccountError::RoleNotAssigned),
            },
            C::IssueKey { key } => Ok(vec![self.issue(key)?]),
            C::RotateKey {
                key_id,
                key,
                overlap_until,
            } => {
                let old = self.current_key(key_id)?;
                let replaced_by = key.key_id;
                let issued = self.issue(key)?;
                Ok(vec![
                    issued,
                    E::KeyRotated {
                        key_id,
                        replaced_by,
                        valid_until: overlap_until.min(old.expires_at),
                    },
                ])
            }
            C::RevokeKey { key_id } => {
                self.current_key(key_id)?;
                Ok(vec![E::KeyRevoked { key_id }])
            }
            C::Erase => Ok(vec![E::Erased]),
        }
    }

    fn issue(&self, key: NewKey) -> Result<ServiceAccountEvent, ServiceAccountError> {
        if self.status == ServiceAccountStatus::Disabled {
            return Err(ServiceAccountError::Disabled);
        }
        if self.keys.contains_key(&key.key_id) {
            return Err(ServiceAccountError::KeyExists);
        }
        Ok(ServiceAccountEvent::KeyIssued {
            key_id: key.key_id,
            description: key.description,
            scope: key.scope,
            expires_at: key.expires_at,
            secret_hash: key.secret_hash,
        })
    }

    fn current_key(&self, key_id: Uuid) -> Result<&IssuedKey, ServiceAccountError> {
        self.keys
            .get(&key_id)
            .filter(|key| key.is_current())
            .ok_or(ServiceAccountError::KeyNotFound)
    }

    /// One event per field that changes; none when nothing does.
    fn changes(
        &self,
        name: Option<ServiceAccountName>,
        description: Option<ServiceAccountDescription>,
        enabled: Option<bool>,
    ) -> Vec<ServiceAccountEvent> {
        let name = name
            .filter(|name| self.name.as_ref() != Some(name))
            .map(|name| ServiceAccountEvent::NameChanged { name });
        let description = description
            .filter(|description| &self.description != description)
            .map(|description| ServiceAccountEvent::DescriptionChanged { description });
        let is_enabled = self.status == ServiceAccountStatus::Active;
        let enabled =
            enabled
                .filter(|enabled| *enabled != is_enabled)
                .map(|enabled| match enabled {
                    true => ServiceAccountEvent::Enabled,
                    false => ServiceAccountEvent::Disabled,
                });
        [name, description, enabled].into_iter().flatten().collect()
    }

    fn ensure_exists(&self) -> Result<(), ServiceAccountError> {
        match self.exists() {
            true => Ok(()),
            false => Err(ServiceAccountError::NotFound),
        }
    }
}

impl Aggregate for ServiceAccount {
    const TYPE: &'static str = "service_account";
    type Command = ServiceAccountCommand;
    type Event = ServiceAccountEvent;
    type Error = ServiceAccountError;
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
        use ServiceAccountEvent as E;
        match event {
            E::Created {
                service_account_id,
                name,
                description,
            } => {
                self.id = Some(service_account_id);
                self.name = Some(name);
                self.description = description;
            }
            E::NameChanged { name } => self.name = Some(name),
            E::DescriptionChanged { description } => self.description = description,
            E::Disabled => self.status = ServiceAccountStatus::Disabled,
            E::Enabled => self.status = ServiceAccountStatus::Active,
            E::RoleAssigned { role_id } => {
                self.roles.insert(role_id);
            }
            E::RoleUnassigned { role_id } => {
                self.roles.remove(&role_id);
            }
            E::KeyIssued {
                key_id,
                description,
                scope,
                expires_at,
                ..
            } => {
                let key = IssuedKey {
                    description,
                    scope,
                    expires_at,
                    revoked: false,
                    replaced_by: None,
                };
                self.keys.insert(key_id, key);
            }
            E::KeyRotated {
                key_id,
                replaced_by,
                valid_until,
            } => {
                if let Some(key) = self.keys.get_mut(&key_id) {
                    key.replaced_by = Some(replaced_by);
                    key.expires_at = valid_until;
                }
            }
            E::KeyRevoked { key_id } => {
                if let Some(key) = self.keys.get_mut(&key_id) {
                    key.revoked = true;
                }
            }
            E::Erased => {
                self.status = ServiceAccountStatus::Erased;
                self.roles.clear();
                self.keys.values_mut().for_each(|key| key.revoked = true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_account::ApiKeyHash;

    const ACCOUNT: Uuid = Uuid::from_u128(1);
    const KEY: Uuid = Uuid::from_u128(2);
    const NEXT_KEY: Uuid = Uuid::from_u128(3);
    const ROLE: Uuid = Uuid::from_u128(9);

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn created() -> ServiceAccountEvent {
        ServiceAccountEvent::Created {
            service_account_id: ACCOUNT,
            name: ServiceAccountName::parse("ci").unwrap(),
            description: ServiceAccountDescription::default(),
        }
    }

    fn new_key(key_id: Uuid, expires_at: DateTime<Utc>) -> NewKey {
        NewKey {
            key_id,
            description: ServiceAccountDescription::default(),
            scope: BTreeSet::from([Permission::UsersRead]),
            expires_at,
            secret_hash: ApiKeyHash::new("ab".repeat(32)),
        }
    }

    fn issued(key_id: Uuid, expires_at: DateTime<Utc>) -> ServiceAccountEvent {
        let key = new_key(key_id, expires_at);
        ServiceAccountEvent::KeyIssued {
            key_id,
            description: key.description,
            scope: key.scope,
            expires_at,
            secret_hash: key.secret_hash,
        }
    }

    /// Given `history`, when `command`, then the events or the error.
    fn when(
        history: Vec<ServiceAccountEvent>,
        command: ServiceAccountCommand,
    ) -> Result<Vec<ServiceAccountEvent>, ServiceAccountError> {
        let mut account = ServiceAccount::default();
        history.into_iter().for_each(|event| account.apply(event));
        account.decide(command)
    }

    #[test]
    fn an_account_is_created_once() {
        let create = ServiceAccountCommand::Create {
            service_account_id: ACCOUNT,
            name: ServiceAccountName::parse("ci").unwrap(),
            description: ServiceAccountDescription::default(),
        };
        assert_eq!(when(vec![], create.clone()), Ok(vec![created()]));
        assert_eq!(
            when(vec![created()], create),
            Err(ServiceAccountError::AlreadyExists)
        );
    }

    #[test]
    fn an_update_writes_one_event_per_changed_field() {
        let update = |enabled| ServiceAccountCommand::Update {
            name: Some(ServiceAccountName::parse("ci").unwrap()),
            description: Some(ServiceAccountDescription::parse("builds").unwrap()),
            enabled: Some(enabled),
        };
        assert_eq!(
            when(vec![created()], update(false)),
            Ok(vec![
                ServiceAccountEvent::DescriptionChanged {
                    description: ServiceAccountDescription::parse("builds").unwrap()
                },
                ServiceAccountEvent::Disabled,
            ])
        );
        assert_eq!(
            when(vec![created(), ServiceAccountEvent::Disabled], update(true))
                .unwrap()
                .last(),
            Some(&ServiceAccountEvent::Enabled)
        );
    }

    #[test]
    fn roles_are_assigned_and_unassigned_once() {
        let assign = ServiceAccountCommand::AssignRole { role_id: ROLE };
        let unassign = ServiceAccountCommand::UnassignRole { role_id: ROLE };
        let assigned = ServiceAccountEvent::RoleAssigned { role_id: ROLE };
        assert_eq!(
            when(vec![created()], assign.clone()),
            Ok(vec![assigned.clone()])
        );
        assert_eq!(
            when(vec![created(), assigned.clone()], assign),
            Err(ServiceAccountError::RoleAlreadyAssigned)
        );
        assert_eq!(
            when(vec![created()], unassign.clone()),
            Err(ServiceAccountError::RoleNotAssigned)
        );
        assert_eq!(
            when(vec![created(), assigned], unassign),
            Ok(vec![ServiceAccountEvent::RoleUnassigned { role_id: ROLE }])
        );
    }

    #[test]
    fn a_disabled_account_gets_no_key() {
        let issue = ServiceAccountCommand::IssueKey {
            key: new_key(KEY, at(100)),
        };
        assert_eq!(
            when(vec![created()], issue.clone()),
            Ok(vec![issued(KEY, at(100))])
        );
        assert_eq!(
            when(
                vec![created(), ServiceAccountEvent::Disabled],
                issue.clone()
            ),
            Err(ServiceAccountError::Disabled)
        );
        assert_eq!(
            when(vec![created(), issued(KEY, at(100))], issue),
            Err(ServiceAccountError::KeyExists)
        );
    }

    #[test]
    fn rotation_issues_the_new_key_and_keeps_the_old_one_until_the_overlap_ends() {
        let rotate = |overlap_until| ServiceAccountCommand::RotateKey {
            key_id: KEY,
            key: new_key(NEXT_KEY, at(1_000)),
            overlap_until,
        };
        let rotated = |valid_until| ServiceAccountEvent::KeyRotated {
            key_id: KEY,
            replaced_by: NEXT_KEY,
            valid_until,
        };
        let history = || vec![created(), issued(KEY, at(100))];
        assert_eq!(
            when(history(), rotate(at(50))),
            Ok(vec![issued(NEXT_KEY, at(1_000)), rotated(at(50))])
        );
        // The overlap never extends the old key.
        assert_eq!(
            when(history(), rotate(at(500))).unwrap()[1],
            rotated(at(100))
        );
        let mut again = history();
        again.extend([issued(NEXT_KEY, at(1_000)), rotated(at(50))]);
        assert_eq!(
            when(again, rotate(at(50))),
            Err(ServiceAccountError::KeyNotFound)
        );
    }

    #[test]
    fn a_key_is_revoked_once_and_an_unknown_key_is_not_found() {
        let revoke = ServiceAccountCommand::RevokeKey { key_id: KEY };
        let revoked = ServiceAccountEvent::KeyRevoked { key_id: KEY };
        assert_eq!(
            when(vec![created()], revoke.clone()),
            Err(ServiceAccountError::KeyNotFound)
        );
        assert_eq!(
            when(vec![created(), issued(KEY, at(100))], revoke.clone()),
            Ok(vec![revoked.clone()])
        );
        assert_eq!(
            when(vec![created(), issued(KEY, at(100)), revoked], revoke),
            Err(ServiceAccountError::KeyNotFound)
        );
    }

    #[test]
    fn an_erased_account_refuses_everything() {
        let history = || vec![created(), issued(KEY, at(100)), ServiceAccountEvent::Erased];
        let commands = [
            ServiceAccountCommand::Erase,
            ServiceAccountCommand::AssignRole { role_id: ROLE },
            ServiceAccountCommand::RevokeKey { key_id: KEY },
            ServiceAccountCommand::IssueKey {
                key: new_key(NEXT_KEY, at(100)),
            },
            ServiceAccountCommand::Update {
                name: None,
                description: None,
                enabled: Some(true),
            },
        ];
        for command in commands {
            assert_eq!(
                when(history(), command.clone()),
                Err(ServiceAccountError::NotFound),
                "{command:?}"
            );
        }
        let mut account = ServiceAccount::default();
        history().into_iter().for_each(|event| account.apply(event));
        assert!(account.key(KEY).unwrap().revoked);
        assert!(!account.exists());
    }
}
