//! The write side for users: validated input becomes a command on the user
//! aggregate, with the email claimed first; deactivation and password
//! changes also end the user's sessions.

use std::sync::Arc;

use domain::rbac::PowerChange;
use domain::{ClaimScope, DisplayName, Email, Password, RevocationReason, User, UserCommand};
use infra::commands::CommandBus;
use infra::sessions::UserSessions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::{Claim, Claims};
use crate::erasure::Erasure;
use crate::failed_logins::FailedLogins;
use crate::password::Passwords;
use crate::power::{Actor, PowerGuard};
use crate::{AppError, RequestContext};

pub struct UserCommands {
    users: CommandBus<User>,
    power: PowerGuard,
    sessions: UserSessions,
    claims: Claims,
    erasure: Erasure,
    passwords: Arc<Passwords>,
    failed_logins: Arc<FailedLogins>,
}

/// Who registers a user, which decides what guards the registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registrant {
    /// Open sign-up, by anyone: refused while the client's address is
    /// blocked, and an email in use counts toward the block like a failed
    /// login, since the answer tells the caller that the email has an account.
    SignUp,
    /// A user holding `users:write` (or a service account, with the API key
    /// it acts with), recorded as the events' actor.
    Administrator {
        actor_id: Uuid,
        api_key_id: Option<Uuid>,
    },
    /// The operator's `api admin bootstrap`, from a shell.
    Operator,
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
    pub fn new(pool: PgPool, passwords: Arc<Passwords>, failed_logins: Arc<FailedLogins>) -> Self {
        Self {
            users: CommandBus::new(pool.clone()),
            power: PowerGuard::new(pool.clone()),
            sessions: UserSessions::new(pool.clone()),
            erasure: Erasure::new(pool.clone()),
            claims: Claims::new(pool),
            passwords,
            failed_logins,
        }
    }

    #[tracing::instrument(skip_all, fields(user_id, correlation_id = %context.correlation_id))]
    pub async fn register(
        &self,
        context: &RequestContext,
        registrant: Registrant,
        email: Email,
        display_name: DisplayName,
        password: Password,
    ) -> Result<Registered, AppError> {
        let signing_up = registrant == Registrant::SignUp;
        if signing_up {
            self.failed_logins.refuse_if_blocked(context).await?;
        }
        let user_id = Uuid::now_v7();
        tracing::Span::current().record("user_id", tracing::field::display(user_id));
        let password_hash = self.passwords.hash(password).await?;
        let command = UserCommand::Register {
            user_id,
            email: email.clone(),
            display_name,
            password_hash,
        };
        let metadata = match registrant {
            Registrant::Administrator {
                actor_id,
                api_key_id,
            } => bus::EventMetadata {
                api_key_id: api_key_id.map(|id| id.to_string()),
                ..context.metadata_as(Some(actor_id))
            },
            Registrant::SignUp | Registrant::Operator => context.metadata_as(None),
        };
        let registered = self
            .execute_claiming(&metadata, user_id, Some(&email), command)
            .await;
        if signing_up && matches!(registered, Err(AppError::EmailTaken)) {
            self.failed_logins
                .record(context, None, chrono::Utc::now())
                .await?;
        }
        Ok(Registered {
            user_id,
            position: registered?,
        })
    }

    /// Changes email and display name in one command, so either both change
    /// or neither. Another user's email (the way into their account) only
    /// by an actor who holds everything that user holds.
    pub async fn update_profile(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
        email: Option<Email>,
        display_name: Option<DisplayName>,
    ) -> Result<i64, AppError> {
        if email.is_some() {
            self.power.require_outranks(actor, user_id).await?;
        }
        let command = UserCommand::UpdateProfile {
            email: email.clone(),
            display_name,
        };
        let metadata = context.metadata_by(actor);
        self.execute_claiming(&metadata, user_id, email.as_ref(), command)
            .await
    }

    /// Deactivates the user and ends all their sessions; never the last
    /// active user holding every permission.
    pub async fn deactivate(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<i64, AppError> {
        self.power.require_outranks(actor, user_id).await?;
        let change = PowerChange::Deactivate { user_id };
        let position = self
            .power
            .keeping_an_administrator(change, || {
                self.execute(context, actor, user_id, UserCommand::Deactivate)
            })
            .await?;
        let ended = (user_id, None);
        self.end_sessions(
            context,
            actor,
            position,
            ended,
            RevocationReason::UserDeactivated,
        )
        .await
    }

    /// Erases the person: records `user.erased` (once; never the last
    /// active user holding every permission, never a user holding what the
    /// actor lacks), revokes their sessions, frees their email and scrubs
    /// their personal values from the event store. Every step is safe to
    /// repeat, so erasing again completes an erasure a failure cut short.
    pub async fn erase(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<i64, AppError> {
        self.power.require_outranks(actor, user_id).await?;
        let change = PowerChange::Erase { user_id };
        let now = chrono::Utc::now();
        let position = self
            .power
            .keeping_an_administrator(change, || {
                self.execute(context, actor, user_id, UserCommand::Erase { now })
            })
            .await?;
        let ended = (user_id, None);
        let position = self
            .end_sessions(
                context,
                actor,
                position,
                ended,
                RevocationReason::UserErased,
            )
            .await?;
        self.erasure.scrub(user_id).await?;
        Ok(position)
    }

    pub async fn reactivate(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<i64, AppError> {
        self.power.require_outranks(actor, user_id).await?;
        self.execute(context, actor, user_id, UserCommand::Reactivate)
            .await
    }

    /// Ends a lock before its time.
    pub async fn unlock(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<i64, AppError> {
        self.power.require_outranks(actor, user_id).await?;
        let now = chrono::Utc::now();
        self.execute(context, actor, user_id, UserCommand::Unlock { now })
            .await
    }

    /// Sets a new password and ends every other session of the user (all of
    /// them when an administrator sets it).
    pub async fn change_password(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
        new_password: Password,
        by: PasswordChangeBy,
    ) -> Result<i64, AppError> {
        let keep = match by {
            PasswordChangeBy::Owner {
                current_password,
                session_id,
            } => {
                self.check_current_password(context, user_id, current_password)
                    .await?;
                Some(session_id)
            }
            PasswordChangeBy::Administrator => {
                self.power.require_outranks(actor, user_id).await?;
                None
            }
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
        let ended = (user_id, keep);
        self.end_sessions(
            context,
            actor,
            position,
            ended,
            RevocationReason::PasswordChanged,
        )
        .await
    }

    /// The owner's current password, checked like a login: refused while
    /// the client's address is blocked or the user is locked, bounded per
    /// account in the hashing queue, and a wrong one counted as a failed
    /// login (per address, and towards the user's lockout).
    async fn check_current_password(
        &self,
        context: &RequestContext,
        user_id: Uuid,
        current_password: String,
    ) -> Result<(), AppError> {
        self.failed_logins.refuse_if_blocked(context).await?;
        let user = self.users.load(&user_id.to_string()).await?;
        let account = user.email().map(Email::uniqueness_key).unwrap_or_default();
        let verified = self
            .passwords
            .verify(&account, current_password, user.password_hash().cloned())
            .await?;
        let now = chrono::Utc::now();
        if !verified.matches {
            self.failed_logins
                .record(context, Some(user_id), now)
                .await?;
        }
        if !verified.matches || user.is_locked_at(now) {
            return Err(AppError::Invalid {
                field: "current_password",
                message: "is not the current password",
            });
        }
        Ok(())
    }

    /// Gives the user a role that exists and is not deleted, if the actor
    /// holds every permission the role grants.
    pub async fn assign_role(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
        role_id: Uuid,
    ) -> Result<i64, AppError> {
        let Some(granted) = self.power.permissions_of_role(role_id).await? else {
            return Err(AppError::Invalid {
                field: "role_id",
                message: "names no role",
            });
        };
        actor.require_all(granted)?;
        self.execute(context, actor, user_id, UserCommand::AssignRole { role_id })
            .await
    }

    /// Takes a role from the user, if the actor holds every permission the
    /// role grants; never from the last active user holding every permission.
    pub async fn unassign_role(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
        role_id: Uuid,
    ) -> Result<i64, AppError> {
        let granted = self.power.permissions_of_role(role_id).await?;
        actor.require_all(granted.unwrap_or_default())?;
        let change = PowerChange::Unassign { user_id, role_id };
        self.power
            .keeping_an_administrator(change, || {
                self.execute(
                    context,
                    actor,
                    user_id,
                    UserCommand::UnassignRole { role_id },
                )
            })
            .await
    }

    async fn execute(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
        command: UserCommand,
    ) -> Result<i64, AppError> {
        self.execute_claiming(&context.metadata_by(actor), user_id, None, command)
            .await
    }

    /// Revokes the user's sessions but `keep`, after a command that wrote up
    /// to `position`: the position of the last event written by either.
    async fn end_sessions(
        &self,
        context: &RequestContext,
        actor: &Actor,
        position: i64,
        (user_id, keep): (Uuid, Option<Uuid>),
        reason: RevocationReason,
    ) -> Result<i64, AppError> {
        let metadata = context.metadata_by(actor);
        let revoked = self
            .sessions
            .revoke_all(user_id, keep, reason, &metadata)
            .await?;
        Ok(position.max(revoked))
    }

    /// Claims `email` for the user (when given), runs the command, and frees
    /// the claim again if the command did not write the event that uses it.
    async fn execute_claiming(
        &self,
        metadata: &bus::EventMetadata,
        user_id: Uuid,
        email: Option<&Email>,
        command: UserCommand,
    ) -> Result<i64, AppError> {
        let claim = email.map(|email| Claim {
            scope: ClaimScope::USER_EMAIL,
            value: email.uniqueness_key(),
            owner: user_id,
        });
        let outcome = self
            .claims
            .while_claimed(claim.as_ref(), || async {
                Ok(self
                    .users
                    .execute(&user_id.to_string(), command, metadata)
                    .await?)
            })
            .await?;
        if outcome.position == 0 {
            return Err(AppError::NotFound("user"));
        }
        Ok(outcome.position)
    }
}
