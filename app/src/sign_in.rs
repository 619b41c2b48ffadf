//! Login, refresh and logout: the session lifecycle as seen by a client.
//! Every refusal is the same 401, whatever the cause, and the unknown-email
//! path still runs one argon2id verification so it takes the same time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use domain::second_factor::AuthenticationMethod;
use domain::session::ReuseInterval;
use domain::ProofMethod;
use domain::{
    Email, RevocationReason, Session, SessionCommand, SessionError, SessionEvent, User,
    UserCommand, UserStatus,
};
use infra::commands::CommandBus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::Claims;
use crate::failed_logins::FailedLogins;
use crate::password::Passwords;
use crate::refresh_token::RefreshToken;
use crate::second_factors::{Challenge, Proof, SecondFactorService, CHALLENGE_LIFETIME};
use crate::tokens::{AccessTokens, Issued};
use crate::AppError;
use crate::RequestContext;

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub lifetime: chrono::Duration,
    pub idle_timeout: chrono::Duration,
    /// How long a rotated refresh token still refreshes (zero: not at all).
    pub refresh_reuse_interval: chrono::Duration,
}

/// What login and refresh hand to the client.
pub struct TokenPair {
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    pub session_id: Uuid,
    /// The session's absolute end (a refresh does not move it).
    pub session_expires_at: DateTime<Utc>,
}

pub struct SignIn {
    users: Arc<CommandBus<User>>,
    sessions: CommandBus<Session>,
    passwords: Arc<Passwords>,
    tokens: Arc<AccessTokens>,
    policy: SessionPolicy,
    failed_logins: Arc<FailedLogins>,
    claims: Claims,
    pool: PgPool,
    second_factors: Arc<SecondFactorService>,
}

impl SignIn {
    pub fn new(
        pool: PgPool,
        passwords: Arc<Passwords>,
        tokens: Arc<AccessTokens>,
        policy: SessionPolicy,
        failed_logins: Arc<FailedLogins>,
        second_factors: Arc<SecondFactorService>,
    ) -> Self {
        Self {
            second_factors,
            users: Arc::new(CommandBus::new(pool.clone())),
            sessions: CommandBus::new(pool.clone()),
            passwords,
            tokens,
            policy,
            failed_logins,
            claims: Claims::new(pool.clone()),
            pool,
        }
    }

    #[tracing::instrument(skip_all, fields(user_id, session_id))]
    pub async fn login(
        &self,
        context: &RequestContext,
        email: &str,
        password: String,
    ) -> Result<Login, AppError> {
        self.failed_logins.refuse_if_blocked(context).await?;
        let user_id = self.user_with_email(email).await?;
        // An unknown email loads an empty stream, so both paths do the same reads.
        let lookup_id = user_id.unwrap_or_else(Uuid::new_v4);
        let user = self.users.load(&lookup_id.to_string()).await?;
        let verified = self
            .passwords
            .verify(&account_key(email), password, user.password_hash().cloned())
            .await?;
        let now = Utc::now();
        let Some(user_id) = user_id.filter(|_| user.is_registered()) else {
            // Counted for the address like any failure: a block then answers
            // alike for emails that exist and emails that do not.
            self.failed_logins.record(context, None, now).await?;
            return Err(AppError::InvalidCredentials);
        };
        tracing::Span::current().record("user_id", tracing::field::display(user_id));
        if user.check_can_log_in(now).is_err() {
            // An erased person's login keeps nothing of them, not even
            // their client's address: nothing can be guessed of an account
            // without a password.
            if user.status() != UserStatus::Erased {
                self.failed_logins.record(context, None, now).await?;
            } else {
                self.failed_logins
                    .refuse_if_threshold_reached(context, now)
                    .await?;
            }
            return Err(AppError::InvalidCredentials);
        }
        if !verified.matches {
            self.failed_logins
                .record(context, Some(user_id), now)
                .await?;
            return Err(AppError::InvalidCredentials);
        }
        if let Some(password_hash) = verified.rehashed {
            self.rehash(context, user_id, password_hash).await;
        }
        if self.second_factors.required(user_id).await? {
            let challenge = self.second_factors.challenge(user_id).await?;
            return Ok(Login::SecondFactorRequired {
                challenge,
                expires_in: CHALLENGE_LIFETIME.num_seconds(),
            });
        }
        self.start_session(context, user_id, None, now)
            .await
            .map(Login::Tokens)
    }

    /// The second step of a login: a live challenge from the first and a
    /// right code or recovery code. A wrong one counts toward the account's
    /// lockout and the address's block like a wrong password; the
    /// challenge is used up by the step that succeeds.
    #[tracing::instrument(skip_all, fields(user_id, session_id))]
    pub async fn complete(
        &self,
        context: &RequestContext,
        challenge: &str,
        proof: &Proof,
    ) -> Result<TokenPair, AppError> {
        self.failed_logins.refuse_if_blocked(context).await?;
        let now = Utc::now();
        let Some((user_id, passkey_state)) = self.second_factors.challenged(challenge).await?
        else {
            self.failed_logins.record(context, None, now).await?;
            return Err(AppError::InvalidCredentials);
        };
        tracing::Span::current().record("user_id", tracing::field::display(user_id));
        let user = self.users.load(&user_id.to_string()).await?;
        if user.check_can_log_in(now).is_err() {
            return Err(AppError::InvalidCredentials);
        }
        if !self
            .second_factors
            .check(context, user_id, proof, passkey_state)
            .await?
        {
            self.failed_logins
                .record(context, Some(user_id), now)
                .await?;
            return Err(AppError::InvalidCredentials);
        }
        if !self.second_factors.use_challenge(challenge).await? {
            return Err(AppError::InvalidCredentials);
        }
        self.start_session(context, user_id, Some(proof.method()), now)
            .await
    }

    /// A person in session `session_id` proves a second factor again, so
    /// that sensitive commands run for a while (`STEP_UP_MAX_AGE`): the
    /// proof is recorded, and a new access token says so (`amr`,
    /// `auth_time`). A wrong code counts toward the lockout like a wrong
    /// password, and answers which field was wrong. A passkey answers the
    /// step-up ceremony `ceremony` names (`begin_passkey_step_up`).
    #[tracing::instrument(skip_all, fields(user_id = %user_id, session_id = %session_id))]
    pub async fn step_up(
        &self,
        context: &RequestContext,
        (user_id, session_id): (Uuid, Uuid),
        proof: &Proof,
        ceremony: Option<&str>,
    ) -> Result<Issued, AppError> {
        self.failed_logins.refuse_if_blocked(context).await?;
        let now = Utc::now();
        if !self.second_factors.required(user_id).await? {
            return Err(AppError::NotFound("second factor"));
        }
        let passkey_state = match (proof, ceremony) {
            (Proof::Passkey(_), Some(ceremony)) => {
                self.second_factors
                    .passkey_step_up(user_id, ceremony)
                    .await?
            }
            (Proof::Passkey(_), None) => {
                return Err(AppError::Invalid {
                    field: "ceremony",
                    message: "is required with a passkey: POST /v1/auth/step-up/passkey first",
                })
            }
            _ => None,
        };
        if !self
            .second_factors
            .check(context, user_id, proof, passkey_state)
            .await?
        {
            self.failed_logins
                .record(context, Some(user_id), now)
                .await?;
            return Err(AppError::Invalid {
                field: proof.field(),
                message: "is not a valid second factor for this person now",
            });
        }
        self.second_factors
            .record_verification(context, user_id, session_id, proof.method())
            .await?;
        let user = self.users.load(&user_id.to_string()).await?;
        let roles = self.role_names(&user).await?;
        let proved = (Some(proof.method()), now);
        Ok(self.tokens.issue(
            user_id,
            session_id,
            roles,
            (&methods(proved.0), proved.1),
            now,
        )?)
    }

    /// Starts a session for `user_id`, who just proved who they are, with
    /// a second factor too when `second_factor` says how.
    async fn start_session(
        &self,
        context: &RequestContext,
        user_id: Uuid,
        second_factor: Option<ProofMethod>,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AppError> {
        let second_factor_used = second_factor.is_some();
        let session_id = Uuid::now_v7();
        tracing::Span::current().record("session_id", tracing::field::display(session_id));
        let refresh_token = RefreshToken::generate(session_id);
        let start = SessionCommand::Start {
            second_factor_used,
            session_id,
            user_id,
            refresh_token_hash: refresh_token.hash(),
            started_at: now,
            expires_at: now + self.policy.lifetime,
            idle_timeout_seconds: self.policy.idle_timeout.num_seconds(),
            ip: context.request_ip.clone(),
            user_agent: context.user_agent.clone(),
        };
        let metadata = context.metadata_as(Some(user_id));
        // The event store refuses the start once the person's erasure is
        // recorded (infra::erased): a login like any refused one.
        self.sessions
            .execute(&session_id.to_string(), start, &metadata)
            .await
            .map_err(|error| {
                if infra::erased::refused_as_erased(&error) {
                    AppError::InvalidCredentials
                } else {
                    AppError::from(error)
                }
            })?;
        let session = IssuedSession {
            user_id,
            session_id,
            refresh_token,
            expires_at: now + self.policy.lifetime,
            authenticated_at: now,
            second_factor,
        };
        if let Some(method) = second_factor {
            self.second_factors
                .record_verification(context, user_id, session_id, method)
                .await?;
        }
        self.issue_if_still_allowed(context, session, now).await
    }

    #[tracing::instrument(skip_all, fields(session_id))]
    pub async fn refresh(
        &self,
        context: &RequestContext,
        presented: &str,
    ) -> Result<TokenPair, AppError> {
        self.failed_logins.refuse_if_blocked(context).await?;
        let presented = RefreshToken::parse(presented).ok_or(AppError::InvalidRefreshToken)?;
        let session_id = presented.session_id();
        tracing::Span::current().record("session_id", tracing::field::display(session_id));
        let next = RefreshToken::generate(session_id);
        let now = Utc::now();
        let command = SessionCommand::Refresh {
            presented: presented.hash(),
            next: next.hash(),
            reuse_interval: ReuseInterval::new(self.policy.refresh_reuse_interval),
            now,
        };
        // A concurrent refresh with the same token is decided anew against the
        // rotation that won: a rotation within the reuse interval, a revocation after.
        let outcome = self
            .sessions
            .execute_retrying_conflicts_with(
                &session_id.to_string(),
                || command.clone(),
                |session: &Session| context.metadata_as(session.user_id()),
            )
            .await
            .map_err(refresh_error)?;
        let user_id = outcome
            .state
            .user_id()
            .ok_or(AppError::InvalidRefreshToken)?;
        if outcome
            .events
            .iter()
            .any(|event| matches!(event, SessionEvent::Revoked { .. }))
        {
            tracing::warn!(%session_id, "a rotated refresh token was presented again; session revoked");
            return Err(AppError::InvalidRefreshToken);
        }
        let started_at = outcome.state.started_at().unwrap_or(now);
        let (second_factor, authenticated_at) =
            match self.second_factors.verification(session_id).await? {
                Some((method, at)) => (Some(method), at.max(started_at)),
                None if outcome.state.second_factor_used() => (Some(ProofMethod::Totp), started_at),
                None => (None, started_at),
            };
        let session = IssuedSession {
            user_id,
            session_id,
            refresh_token: next,
            expires_at: outcome.state.expires_at().unwrap_or(now),
            authenticated_at,
            second_factor,
        };
        self.issue_if_still_allowed(context, session, now).await
    }

    pub async fn end_session(
        &self,
        context: &RequestContext,
        actor: Uuid,
        session_id: Uuid,
        reason: RevocationReason,
    ) -> Result<i64, AppError> {
        let command = SessionCommand::Revoke {
            reason,
            now: Utc::now(),
        };
        let outcome = self
            .sessions
            .execute(
                &session_id.to_string(),
                command,
                &context.metadata_as(Some(actor)),
            )
            .await?;
        Ok(outcome.position)
    }

    /// Issues tokens unless the user was deactivated, locked or erased
    /// while the session was being written; the deactivation (or erasure)
    /// then either sees this session or this check sees it, never neither.
    /// The session then ends for that reason, once, even when the
    /// deactivation or erasure revokes it at the same moment.
    async fn issue_if_still_allowed(
        &self,
        context: &RequestContext,
        session: IssuedSession,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AppError> {
        let IssuedSession {
            user_id,
            session_id,
            refresh_token,
            expires_at,
            authenticated_at,
            second_factor,
        } = session;
        let user = self.users.load(&user_id.to_string()).await?;
        if user.check_can_log_in(now).is_err() {
            let reason = revocation_reason(&user, now);
            let command = || SessionCommand::Revoke {
                reason,
                now: Utc::now(),
            };
            self.sessions
                .execute_retrying_conflicts(
                    &session_id.to_string(),
                    command,
                    &context.metadata_as(Some(user_id)),
                )
                .await?;
            return Err(AppError::InvalidCredentials);
        }
        let roles = self.role_names(&user).await?;
        let methods = methods(second_factor);
        let access = self.tokens.issue(
            user_id,
            session_id,
            roles,
            (&methods, authenticated_at),
            now,
        )?;
        Ok(TokenPair {
            access_token: access.token,
            expires_in: access.expires_in,
            refresh_token: refresh_token.expose().to_owned(),
            session_id,
            session_expires_at: expires_at,
        })
    }

    async fn role_names(&self, user: &User) -> Result<Vec<String>, AppError> {
        let ids: Vec<Uuid> = user.roles().iter().copied().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar("SELECT name FROM role_grants WHERE role_id = ANY($1) ORDER BY name")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(AppError::from)
    }

    async fn user_with_email(&self, email: &str) -> Result<Option<Uuid>, AppError> {
        let Ok(email) = Email::parse_existing(email) else {
            return Ok(None);
        };
        Ok(self.claims.email_owner(&email).await?)
    }

    async fn rehash(&self, context: &RequestContext, user_id: Uuid, hash: domain::PasswordHash) {
        let command = UserCommand::RehashPassword {
            password_hash: hash,
        };
        match self
            .users
            .execute(
                &user_id.to_string(),
                command,
                &context.metadata_as(Some(user_id)),
            )
            .await
        {
            Ok(_) => tracing::info!(%user_id, "password rehashed with the current parameters"),
            Err(error) => tracing::warn!(%user_id, %error, "could not rehash a password"),
        }
    }
}

/// Why a session of a user who may no longer sign in ends.
fn revocation_reason(user: &User, now: DateTime<Utc>) -> RevocationReason {
    if user.status() == UserStatus::Erased {
        RevocationReason::UserErased
    } else if user.is_locked_at(now) {
        RevocationReason::UserLocked
    } else {
        RevocationReason::UserDeactivated
    }
}

/// A session just started or refreshed, whose tokens are about to be issued.
struct IssuedSession {
    user_id: Uuid,
    session_id: Uuid,
    refresh_token: RefreshToken,
    expires_at: DateTime<Utc>,
    /// When the person last proved who they are: the session's start, or
    /// a later step-up.
    authenticated_at: DateTime<Utc>,
    /// The second factor proved, if any.
    second_factor: Option<ProofMethod>,
}

/// The `amr` of a session: the password, and the second factor if proved.
fn methods(second_factor: Option<ProofMethod>) -> Vec<AuthenticationMethod> {
    std::iter::once(AuthenticationMethod::Password)
        .chain(second_factor.map(ProofMethod::authentication_method))
        .collect()
}

/// What the first step of a login answers.
pub enum Login {
    Tokens(TokenPair),
    /// The password was right and the account has a second factor: the
    /// second step must present this challenge with a code.
    SecondFactorRequired {
        challenge: Challenge,
        expires_in: i64,
    },
}

/// A conflict left after the retries means other refreshes keep winning; a
/// client's retry can still succeed within the reuse interval.
fn refresh_error(error: AggregateError<SessionError>) -> AppError {
    match error {
        AggregateError::UserError(SessionError::HistoryUnavailable(unavailable)) => {
            AppError::EventStore(Box::new(unavailable))
        }
        AggregateError::UserError(_) => AppError::InvalidRefreshToken,
        AggregateError::AggregateConflict => AppError::ConcurrencyConflict,
        other => other.into(),
    }
}

/// The key the hashing queue's per-account bound counts a login by: the
/// mailbox's canonical form, or the text as sent when it is no email (so
/// every login is bounded, whether the account exists or not).
pub fn account_key(email: &str) -> String {
    Email::parse_existing(email).map_or_else(|_| email.to_owned(), |email| email.uniqueness_key())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use cqrs_es::Aggregate;
    use domain::{DisplayName, PasswordHash, UserEvent};

    use super::*;

    /// Given a user with `history` after registration.
    fn user_after(history: Vec<UserEvent>) -> User {
        let mut user = User::default();
        let registered = UserEvent::Registered {
            user_id: Uuid::from_u128(0xada),
            email: Email::parse("ada@example.com").unwrap(),
            display_name: DisplayName::parse("Ada").unwrap(),
            password_hash: PasswordHash::new("$argon2id$x".into()),
        };
        for event in std::iter::once(registered).chain(history) {
            user.apply(event);
        }
        user
    }

    #[test]
    fn a_session_of_a_user_who_may_no_longer_sign_in_ends_for_why() {
        let now = Utc::now();
        let locked = UserEvent::Locked {
            until: now + TimeDelta::minutes(5),
            failures: 5,
        };
        let erased = UserEvent::Erased { erased_at: now };
        let cases = [
            (
                vec![UserEvent::Deactivated],
                RevocationReason::UserDeactivated,
            ),
            (vec![locked.clone()], RevocationReason::UserLocked),
            (vec![erased.clone()], RevocationReason::UserErased),
            // Erased while locked: the erasure is why.
            (vec![locked, erased], RevocationReason::UserErased),
        ];
        for (history, reason) in cases {
            assert_eq!(revocation_reason(&user_after(history), now), reason);
        }
    }
}
