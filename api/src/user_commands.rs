//! The write side for users: validated input becomes a command, executed by
//! cqrs-es on the postgres-es event store, with the email claimed first.

use cqrs_es::AggregateError;
use domain::{DisplayName, Email, Password, User, UserCommand, UserError};
use postgres_es::{postgres_cqrs, PostgresCqrs};
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::{Claims, USER_EMAIL};
use crate::extract::RequestContext;
use crate::password;
use crate::problem::ApiError;

pub struct UserCommands {
    cqrs: PostgresCqrs<User>,
    claims: Claims,
    pool: PgPool,
}

pub struct Registered {
    pub user_id: Uuid,
    pub position: i64,
}

impl UserCommands {
    pub fn new(pool: PgPool) -> Self {
        Self {
            cqrs: postgres_cqrs(pool.clone(), Vec::new(), ()),
            claims: Claims::new(pool.clone()),
            pool,
        }
    }

    #[tracing::instrument(skip_all, fields(user_id, correlation_id = %context.correlation_id))]
    pub async fn register(
        &self,
        context: &RequestContext,
        email: Email,
        display_name: DisplayName,
        password: Password,
    ) -> Result<Registered, ApiError> {
        let user_id = Uuid::now_v7();
        tracing::Span::current().record("user_id", tracing::field::display(user_id));
        let password_hash = password::hash(password).await.map_err(ApiError::internal)?;
        let command = UserCommand::Register {
            user_id,
            email: email.clone(),
            display_name,
            password_hash,
        };
        let position = self
            .execute_claiming(context, user_id, Some(&email), command)
            .await?;
        Ok(Registered { user_id, position })
    }

    /// Changes email and display name in one command, so either both change or neither.
    pub async fn update_profile(
        &self,
        context: &RequestContext,
        user_id: Uuid,
        email: Option<Email>,
        display_name: Option<DisplayName>,
    ) -> Result<i64, ApiError> {
        let command = UserCommand::UpdateProfile {
            email: email.clone(),
            display_name,
        };
        self.execute_claiming(context, user_id, email.as_ref(), command)
            .await
    }

    pub async fn execute(
        &self,
        context: &RequestContext,
        user_id: Uuid,
        command: UserCommand,
    ) -> Result<i64, ApiError> {
        self.execute_claiming(context, user_id, None, command).await
    }

    /// Claims `email` for the user (when given), runs the command, and frees
    /// the claim again if the command did not write the event that uses it.
    async fn execute_claiming(
        &self,
        context: &RequestContext,
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
        let command_id = Uuid::new_v4();
        let metadata = context.metadata_for(command_id).to_map();
        let result = self
            .cqrs
            .execute_with_metadata(&owner, command, metadata)
            .await;
        if let Some(email) = email {
            // Frees nothing when the event was written: the trigger confirmed the claim.
            self.claims
                .release(USER_EMAIL, &email.uniqueness_key(), &owner)
                .await
                .map_err(ApiError::internal)?;
        }
        result.map_err(command_error)?;
        self.position_after(&owner, command_id).await
    }

    /// The global position of the last event the command wrote or, when it
    /// wrote none (a change to the current value), of the user's last event.
    async fn position_after(&self, user_id: &str, command_id: Uuid) -> Result<i64, ApiError> {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT COALESCE( \
               MAX(global_position) FILTER (WHERE metadata ->> 'causation_id' = $3), \
               MAX(global_position)) \
             FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(<User as cqrs_es::Aggregate>::TYPE)
        .bind(user_id)
        .bind(command_id.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("user"))
    }
}

fn command_error(error: AggregateError<UserError>) -> ApiError {
    match error {
        AggregateError::UserError(UserError::NotFound) => ApiError::NotFound("user"),
        AggregateError::UserError(rule) => ApiError::Conflict(rule.to_string()),
        AggregateError::AggregateConflict => ApiError::ConcurrencyConflict,
        other => ApiError::internal(anyhow::anyhow!("command failed: {other}")),
    }
}
