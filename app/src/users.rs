//! The write side for users: validated input becomes a command on the user
//! aggregate, with the email claimed first; deactivation and password
//! changes also end the user's sessions.

use std::sync::Arc;

use cqrs_es::AggregateError;
use domain::{DisplayName, Email, Password, RevocationReason, Role, User, UserCommand, UserError};
use infra::commands::CommandBus;
use infra::sessions::UserSessions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::{Claims, USER_EMAIL};
use crate::extract::RequestContext;
use crate::password::Passwords;
use crate::problem::ApiError;

pub struct UserCommands {
    users: CommandBus<User>,
    roles: CommandBus<Role>,
    sessions: UserSessions,
    claims: Claims,
    passwords: Arc<Passwords>,
}

pub struct Registered {
    pub user_id: Uuid,
    pub position: i64,
}

/// Who changes a password: the user (who must know the current one and
/// keeps the session they act from), or an administrator.
pub enum PasswordChangeBy {
    Owner {
        current_password: String,
        session_id: Uuid,
    },
    Administrator,
}

impl UserCommands {
    pub fn new(pool: PgPool, passwords: Arc<Passwords>) -> Self {
        Self {
            users: CommandBus::new(pool.clone()),
            roles: CommandBus::new(pool.clone()),
            sessions: UserSessions::new(pool.clone()),
            claims: Claims::new(pool),
            passwords,
        }
    }

    #[tracing::instrument(skip_all, fields(user_id, correlation_id = %context.correlation_id))]
    pub async fn register(
        &self,
        context: &RequestContext,
        actor: Option<Uuid>,
        email: Email,
        display_name: DisplayName,
        password: Password,
    ) -> Result<Registered, ApiError> {
        let user_id = Uuid::now_v7();
        tracing::Span::current().record("user_id", tracing::field::display(user_id));
        let password_hash = self.passwords.hash(password).await?;
        let command = UserCommand::Register {
            user_id,
            email: email.clone(),
            display_name,
            password_hash,
        };
        let position = self
            .execute_claiming(context, actor, user_id, Some(&email), command)
            .await?;
        Ok(Registered { user_id, position })
    }

    /// Changes email and display name in one command, so either both change or neither.
    pub async fn update_profile(
        &self,
        context: &RequestContext,
        actor: Uuid,
        user_id: Uuid,
        email: Option<Email>,
        display_name: Option<DisplayName>,
    ) -> Result<i64, ApiError> {
        let command = UserCommand::UpdateProfile {
            email: email.clone(),
            display_name,
        };
        self.execute_claiming(context, Some(actor), user_id, email.as_ref(), command)
            .await
    }

    pub async fn execute(
        &self,
        context: &RequestContext,
        actor: Uuid,
        user_id: Uuid,
        command: UserCommand,
    ) -> Result<i64, ApiError> {
        self.execute_claiming(context, Some(actor), user_id, None, command)
            .await
    }

    /// Deactivates the user and ends all their sessions.
    pub async fn deactivate(
        &self,
        context: &RequestContext,
        actor: Uuid,
        user_id: Uuid,
    ) -> Result<i64, ApiError> {
        let position = self
            .execute(context, actor, user_id, UserCommand::Deactivate)
            .await?;
        let revoked = self
            .end_sessions(
                context,
                actor,
                user_id,
                None,
                RevocationReason::UserDeactivated,
            )
            .await?;
        Ok(position.max(revoked))
    }

    /// Sets a new password and ends every other session of the user (all of
    /// them when an administrator sets it).
    pub async fn change_password(
        &self,
        context: &RequestContext,
        actor: Uuid,
        user_id: Uuid,
        new_password: Password,
        by: PasswordChangeBy,
    ) -> Result<i64, ApiError> {
        let keep = match by {
            PasswordChangeBy::Owner {
                current_password,
                session_id,
            } => {
                let user = self
                    .users
                    .load(&user_id.to_string())
                    .await
                    .map_err(command_error)?;
                let verified = self
                    .passwords
                    .verify(current_password, user.password_hash().cloned())
                    .await?;
                if !verified.matches {
                    return Err(ApiError::invalid(
                        "current_password",
                        "is not the current password",
                    ));
                }
                Some(session_id)
            }
            PasswordChangeBy::Administrator => None,
        };
        let password_hash = self.passwords.hash(new_password).await?;
        let position = self
            .execute(
                context,
                actor,
                user_id,
                UserCommand::ChangePassword { password_hash },
            )
            .await?;
        let revoked = self
            .end_sessions(
                context,
                actor,
                user_id,
                keep,
                RevocationReason::PasswordChanged,
            )
            .await?;
        Ok(position.max(revoked))
    }

    /// Gives the user a role that exists and is not deleted.
    pub async fn assign_role(
        &self,
        context: &RequestContext,
        actor: Uuid,
        user_id: Uuid,
        role_id: Uuid,
    ) -> Result<i64, ApiError> {
        let role = self
            .roles
            .load(&role_id.to_string())
            .await
            .map_err(|error| ApiError::internal(anyhow::anyhow!("{error}")))?;
        if !role.exists() {
            return Err(ApiError::invalid("role_id", "names no role"));
        }
        self.execute(context, actor, user_id, UserCommand::AssignRole { role_id })
            .await
    }

    async fn end_sessions(
        &self,
        context: &RequestContext,
        actor: Uuid,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: RevocationReason,
    ) -> Result<i64, ApiError> {
        self.sessions
            .revoke_all(user_id, keep, reason, &context.metadata_as(Some(actor)))
            .await
            .map_err(|error| ApiError::internal(anyhow::anyhow!("ending sessions: {error}")))
    }

    /// Claims `email` for the user (when given), runs the command, and frees
    /// the claim again if the command did not write the event that uses it.
    async fn execute_claiming(
        &self,
        context: &RequestContext,
        actor: Option<Uuid>,
        user_id: Uuid,
        email: Option<&Email>,
        command: UserCommand,
    ) -> Result<i64, ApiError> {
        let owner = user_id.to_string();
        if let Some(email) = email {
            let claimed = self
                .claims
                .claim(USER_EMAIL, &email.uniqueness_key(), &owner)
                .await
                .map_err(ApiError::internal)?;
            if !claimed {
                return Err(ApiError::Conflict("the email is already in use".into()));
            }
        }
        let result = self
            .users
            .execute(&owner, command, &context.metadata_as(actor))
            .await;
        if let Some(email) = email {
            // Frees nothing when the event was written: the trigger confirmed the claim.
            self.claims
                .release(USER_EMAIL, &email.uniqueness_key(), &owner)
                .await
                .map_err(ApiError::internal)?;
        }
        let outcome = result.map_err(command_error)?;
        if outcome.position == 0 {
            return Err(ApiError::NotFound("user"));
        }
        Ok(outcome.position)
    }
}

fn command_error(error: AggregateError<UserError>) -> ApiError {
    match error {
        AggregateError::UserError(UserError::NotFound) => ApiError::NotFound("user"),
        AggregateError::UserError(UserError::RoleNotAssigned) => {
            ApiError::NotFound("role assignment")
        }
        AggregateError::UserError(rule) => ApiError::Conflict(rule.to_string()),
        AggregateError::AggregateConflict => ApiError::ConcurrencyConflict,
        other => ApiError::internal(anyhow::anyhow!("command failed: {other}")),
    }
}
