//! The write side for service accounts and their API keys. Nobody gives an
//! account or a key a permission they do not hold: assigning or taking a
//! role needs every permission it grants (as for users), a key's scope must
//! lie within both the account's permissions and the actor's, and acting
//! on an account (changing, disabling, erasing it, or issuing, rotating or
//! revoking its keys) needs every permission the account holds, since its
//! keys are a way into that power.

pub mod authentication;
pub mod queries;

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    NewKey, Permission, ServiceAccount, ServiceAccountCommand, ServiceAccountDescription,
    ServiceAccountName,
};
use infra::commands::CommandBus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::api_key::ApiKey;
use crate::power::{Actor, PowerGuard};
use crate::{AppError, RequestContext};

/// Limits on the keys issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// The longest a key may live (`API_KEY_MAX_LIFETIME_DAYS`); also the
    /// lifetime of a key issued without an expiry.
    pub max_lifetime: TimeDelta,
}

impl KeyPolicy {
    pub const DEFAULT: Self = Self {
        max_lifetime: TimeDelta::days(90),
    };
    /// The longest both keys of a rotation may work side by side.
    pub const MAX_OVERLAP: TimeDelta = TimeDelta::days(7);
    /// The overlap of a rotation that names none.
    pub const DEFAULT_OVERLAP: TimeDelta = TimeDelta::hours(24);
}

/// A key just issued: the whole key is in here, to be shown once.
#[derive(Debug)]
pub struct IssuedApiKey {
    pub key: ApiKey,
    pub scope: BTreeSet<Permission>,
    pub expires_at: DateTime<Utc>,
    pub position: i64,
}

/// What a new key asks for.
pub struct KeyRequest {
    pub description: ServiceAccountDescription,
    /// `None`: everything the account holds now.
    pub scope: Option<BTreeSet<Permission>>,
    /// `None`: the policy's longest lifetime.
    pub expires_at: Option<DateTime<Utc>>,
}

pub struct ServiceAccountCommands {
    accounts: CommandBus<ServiceAccount>,
    power: PowerGuard,
    policy: KeyPolicy,
}

impl ServiceAccountCommands {
    pub fn new(pool: PgPool, policy: KeyPolicy) -> Self {
        Self {
            accounts: CommandBus::new(pool.clone()),
            power: PowerGuard::new(pool),
            policy,
        }
    }

    /// Creates an account holding nothing; returns its id and position.
    /// Without an actor, the operator's command line.
    pub async fn create(
        &self,
        context: &RequestContext,
        actor: Option<&Actor>,
        name: ServiceAccountName,
        description: ServiceAccountDescription,
    ) -> Result<(Uuid, i64), AppError> {
        let service_account_id = Uuid::now_v7();
        let command = ServiceAccountCommand::Create {
            service_account_id,
            name,
            description,
        };
        let position = self
            .execute(context, actor, service_account_id, command)
            .await?;
        Ok((service_account_id, position))
    }

    /// Changes name, description or whether the account may act.
    pub async fn update(
        &self,
        context: &RequestContext,
        actor: &Actor,
        service_account_id: Uuid,
        name: Option<ServiceAccountName>,
        description: Option<ServiceAccountDescription>,
        enabled: Option<bool>,
    ) -> Result<i64, AppError> {
        self.outranking(actor, service_account_id).await?;
        let command = ServiceAccountCommand::Update {
            name,
            description,
            enabled,
        };
        self.execute(context, Some(actor), service_account_id, command)
            .await
    }

    /// Gives the account a role whose every permission the actor holds.
    pub async fn assign_role(
        &self,
        context: &RequestContext,
        actor: Option<&Actor>,
        service_account_id: Uuid,
        role_id: Uuid,
    ) -> Result<i64, AppError> {
        let Some(granted) = self.power.permissions_of_role(role_id).await? else {
            return Err(AppError::Invalid {
                field: "role_id",
                message: "names no role",
            });
        };
        if let Some(actor) = actor {
            actor.require_all(granted)?;
        }
        let command = ServiceAccountCommand::AssignRole { role_id };
        self.execute(context, actor, service_account_id, command)
            .await
    }

    /// Takes a role whose every permission the actor holds.
    pub async fn unassign_role(
        &self,
        context: &RequestContext,
        actor: &Actor,
        service_account_id: Uuid,
        role_id: Uuid,
    ) -> Result<i64, AppError> {
        let granted = self.power.permissions_of_role(role_id).await?;
        actor.require_all(granted.unwrap_or_default())?;
        let command = ServiceAccountCommand::UnassignRole { role_id };
        self.execute(context, Some(actor), service_account_id, command)
            .await
    }

    /// Issues a key within the account's permissions and the actor's.
    pub async fn issue_key(
        &self,
        context: &RequestContext,
        actor: Option<&Actor>,
        service_account_id: Uuid,
        request: KeyRequest,
    ) -> Result<IssuedApiKey, AppError> {
        let held = match actor {
            Some(actor) => self.outranking(actor, service_account_id).await?,
            None => self.permissions_of(service_account_id).await?,
        };
        let scope = match request.scope {
            Some(scope) if !scope.is_subset(&held) => {
                return Err(AppError::Invalid {
                    field: "scope",
                    message: "names a permission the service account does not hold",
                })
            }
            Some(scope) => scope,
            None => held,
        };
        if let Some(actor) = actor {
            actor.require_all(scope.iter().copied())?;
        }
        let now = Utc::now();
        let expires_at = self.expiry(request.expires_at, now)?;
        let key = ApiKey::generate(Uuid::now_v7());
        let command = ServiceAccountCommand::IssueKey {
            key: new_key(&key, request.description, scope.clone(), expires_at),
        };
        let position = self
            .execute(context, actor, service_account_id, command)
            .await?;
        Ok(IssuedApiKey {
            key,
            scope,
            expires_at,
            position,
        })
    }

    /// Replaces a key with a new one of the same scope and description;
    /// the old one works for `overlap` more (at most its own expiry).
    pub async fn rotate_key(
        &self,
        context: &RequestContext,
        actor: &Actor,
        service_account_id: Uuid,
        key_id: Uuid,
        overlap: Option<TimeDelta>,
    ) -> Result<IssuedApiKey, AppError> {
        self.outranking(actor, service_account_id).await?;
        let overlap = overlap.unwrap_or(KeyPolicy::DEFAULT_OVERLAP);
        if overlap < TimeDelta::zero() || overlap > KeyPolicy::MAX_OVERLAP {
            return Err(AppError::Invalid {
                field: "overlap_seconds",
                message: "must be between 0 and 604800 (7 days)",
            });
        }
        let (scope, description) = self
            .key_of(service_account_id, key_id)
            .await?
            .ok_or(AppError::NotFound("API key"))?;
        actor.require_all(scope.iter().copied())?;
        let now = Utc::now();
        let expires_at = now + self.policy.max_lifetime;
        let key = ApiKey::generate(Uuid::now_v7());
        let command = ServiceAccountCommand::RotateKey {
            key_id,
            key: new_key(&key, description, scope.clone(), expires_at),
            overlap_until: now + overlap,
        };
        let position = self
            .execute(context, Some(actor), service_account_id, command)
            .await?;
        Ok(IssuedApiKey {
            key,
            scope,
            expires_at,
            position,
        })
    }

    pub async fn revoke_key(
        &self,
        context: &RequestContext,
        actor: &Actor,
        service_account_id: Uuid,
        key_id: Uuid,
    ) -> Result<i64, AppError> {
        self.outranking(actor, service_account_id).await?;
        let command = ServiceAccountCommand::RevokeKey { key_id };
        self.execute(context, Some(actor), service_account_id, command)
            .await
    }

    /// Ends the account for good: its keys stop working and its roles go.
    pub async fn erase(
        &self,
        context: &RequestContext,
        actor: &Actor,
        service_account_id: Uuid,
    ) -> Result<i64, AppError> {
        self.outranking(actor, service_account_id).await?;
        self.execute(
            context,
            Some(actor),
            service_account_id,
            ServiceAccountCommand::Erase,
        )
        .await
    }

    /// What the account holds now, if the actor holds all of it too.
    async fn outranking(
        &self,
        actor: &Actor,
        service_account_id: Uuid,
    ) -> Result<BTreeSet<Permission>, AppError> {
        let held = self.permissions_of(service_account_id).await?;
        actor.require_all(held.iter().copied())?;
        Ok(held)
    }

    /// What the account's roles grant now, from the event store.
    async fn permissions_of(
        &self,
        service_account_id: Uuid,
    ) -> Result<BTreeSet<Permission>, AppError> {
        let account = self.accounts.load(&service_account_id.to_string()).await?;
        if !account.exists() {
            return Err(AppError::NotFound("service account"));
        }
        self.power
            .permissions_of_roles(account.roles().iter().copied())
            .await
    }

    /// A current key's scope and description, from the event store.
    async fn key_of(
        &self,
        service_account_id: Uuid,
        key_id: Uuid,
    ) -> Result<Option<(BTreeSet<Permission>, ServiceAccountDescription)>, AppError> {
        let account = self.accounts.load(&service_account_id.to_string()).await?;
        Ok(account
            .key(key_id)
            .filter(|key| !key.revoked && key.replaced_by.is_none())
            .map(|key| (key.scope.clone(), key.description.clone())))
    }

    fn expiry(
        &self,
        asked: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, AppError> {
        let latest = now + self.policy.max_lifetime;
        match asked {
            None => Ok(latest),
            Some(at) if at <= now => Err(AppError::Invalid {
                field: "expires_at",
                message: "must be in the future",
            }),
            Some(at) if at > latest => Err(AppError::Invalid {
                field: "expires_at",
                message:
                    "is beyond the longest lifetime a key may have (API_KEY_MAX_LIFETIME_DAYS)",
            }),
            Some(at) => Ok(at),
        }
    }

    async fn execute(
        &self,
        context: &RequestContext,
        actor: Option<&Actor>,
        service_account_id: Uuid,
        command: ServiceAccountCommand,
    ) -> Result<i64, AppError> {
        let metadata = match actor {
            Some(actor) => context.metadata_by(actor),
            None => context.metadata_as(None),
        };
        let outcome = self
            .accounts
            .execute(&service_account_id.to_string(), command, &metadata)
            .await?;
        Ok(outcome.position)
    }
}

fn new_key(
    key: &ApiKey,
    description: ServiceAccountDescription,
    scope: BTreeSet<Permission>,
    expires_at: DateTime<Utc>,
) -> NewKey {
    NewKey {
        key_id: key.key_id(),
        description,
        scope,
        expires_at,
        secret_hash: key.digest(),
    }
}
