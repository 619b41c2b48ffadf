//! A person's second factors: enrolling an authenticator app (TOTP) or a
//! passkey, checking a code, a recovery code or a passkey's assertion at
//! the second step of a login or a step-up, and the challenges that carry
//! a login from its first step to its second.
//! The factor's secret never enters an event: it is stored encrypted
//! (`SecretBox`) in `totp_factors`, which `second_factor.totp_enabled`
//! enables in its own transaction.

pub mod passkeys;
pub mod policy;
pub mod recovery_code;
pub mod secret_box;

use std::sync::Arc;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use domain::second_factor::totp::SECRET_BYTES;
use domain::{
    ProofMethod, SecondFactorCommand, SecondFactorError, SecondFactors, TotpCode, TotpSecret, User,
};
use infra::commands::CommandBus;
use infra::integrity::HexDigest;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::power::{Actor, PowerGuard};
use crate::{AppError, RequestContext};
use passkeys::{Ceremony, Holder, InvalidRelyingParty, Passkeys, RelyingParty};
use recovery_code::RecoveryCode;
use secret_box::SecretBox;

/// How long the second step of a login may come after the first.
pub const CHALLENGE_LIFETIME: TimeDelta = TimeDelta::minutes(5);

/// An authenticator app being enrolled: shown once, to put into the app.
pub struct TotpEnrolment {
    pub factor_id: Uuid,
    /// Base32, for typing in.
    pub secret: String,
    /// `otpauth://totp/…`, for a QR code.
    pub otpauth_uri: String,
}

/// An enrolment confirmed: the recovery codes, shown once, when this was
/// the person's first factor.
pub struct Confirmed {
    pub position: i64,
    pub recovery_codes: Option<Vec<RecoveryCode>>,
}

/// What the second step of a login, or a step-up, presents.
pub enum Proof {
    Code(TotpCode),
    RecoveryCode(RecoveryCode),
    /// A passkey's assertion, as `PublicKeyCredential.toJSON()` gives it,
    /// for the ceremony the login's challenge (or a step-up's) began.
    Passkey(serde_json::Value),
}

impl Proof {
    /// How the factor was proved, as recorded.
    pub fn method(&self) -> ProofMethod {
        match self {
            Self::Code(_) => ProofMethod::Totp,
            Self::RecoveryCode(_) => ProofMethod::RecoveryCode,
            Self::Passkey(_) => ProofMethod::Passkey,
        }
    }

    /// The request field that carries it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Code(_) => "code",
            Self::RecoveryCode(_) => "recovery_code",
            Self::Passkey(_) => "passkey",
        }
    }
}

/// The first step of a login with a second factor: the challenge for the
/// second, what it may present, and a passkey ceremony's options when
/// the person has a passkey.
pub struct Challenge {
    pub challenge: String,
    /// `totp`, `passkey`, `recovery_code`: of the factors the person has.
    pub methods: Vec<&'static str>,
    pub passkey: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FactorRow {
    pub factor_id: Uuid,
    /// `totp` or `passkey`.
    pub kind: String,
    /// A passkey's name; an app has none.
    pub name: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub enabled_at: Option<DateTime<Utc>>,
}

pub struct SecondFactorService {
    pool: PgPool,
    factors: CommandBus<SecondFactors>,
    users: CommandBus<User>,
    power: PowerGuard,
    secrets: Arc<SecretBox>,
    issuer: String,
    passkeys: Passkeys,
}

impl SecondFactorService {
    /// `issuer` names the service in authenticator apps; `party` is who
    /// passkeys are registered with.
    pub fn new(
        pool: PgPool,
        secrets: Arc<SecretBox>,
        issuer: String,
        party: &RelyingParty,
    ) -> Result<Self, InvalidRelyingParty> {
        Ok(Self {
            factors: CommandBus::new(pool.clone()),
            users: CommandBus::new(pool.clone()),
            power: PowerGuard::new(pool.clone()),
            passkeys: Passkeys::new(pool.clone(), party)?,
            pool,
            secrets,
            issuer,
        })
    }

    /// Begins registering a passkey for `user_id`: the ceremony's handle
    /// and the browser's options.
    pub async fn begin_passkey(&self, user_id: Uuid) -> Result<Ceremony, AppError> {
        let user = self.users.load(&user_id.to_string()).await?;
        let (Some(email), true) = (user.email(), user.is_registered()) else {
            return Err(AppError::NotFound("user"));
        };
        let display_name = user
            .display_name()
            .map(|name| name.as_str())
            .unwrap_or(email.as_str());
        self.passkeys
            .begin_registration(Holder {
                user_id,
                email: email.as_str(),
                display_name,
            })
            .await
    }

    /// Finishes a passkey's registration with the browser's `credential`
    /// and enables it; like an app's confirmation, it proves the factor in
    /// `session_id`, and a first factor comes with recovery codes.
    pub async fn finish_passkey(
        &self,
        context: &RequestContext,
        actor: &Actor,
        (user_id, session_id): (Uuid, Uuid),
        (handle, credential, name): (&str, serde_json::Value, &str),
    ) -> Result<(Uuid, Confirmed), AppError> {
        let factor_id = self
            .passkeys
            .finish_registration(user_id, handle, credential, name)
            .await?;
        let command = SecondFactorCommand::RegisterPasskey { factor_id };
        let confirmed = self
            .enabled_with(
                context,
                actor,
                (user_id, session_id),
                (command, ProofMethod::Passkey),
            )
            .await?;
        Ok((factor_id, confirmed))
    }

    /// A step-up with a passkey begun, if the person has one.
    pub async fn begin_passkey_step_up(&self, user_id: Uuid) -> Result<Option<Ceremony>, AppError> {
        self.passkeys.begin_step_up(user_id).await
    }

    /// The state of `user_id`'s step-up ceremony `handle`, used up.
    pub async fn passkey_step_up(
        &self,
        user_id: Uuid,
        handle: &str,
    ) -> Result<Option<serde_json::Value>, AppError> {
        self.passkeys.take_step_up(user_id, handle).await
    }

    /// Starts enrolling an authenticator app for `user_id` (labelled with
    /// their email in the app); nothing is asked for at login until it is
    /// confirmed with a code.
    pub async fn begin_totp(&self, user_id: Uuid) -> Result<TotpEnrolment, AppError> {
        let user = self.users.load(&user_id.to_string()).await?;
        let account = match user.email() {
            Some(email) if user.is_registered() => email.as_str().to_owned(),
            _ => return Err(AppError::NotFound("user")),
        };
        let mut bytes = [0u8; SECRET_BYTES];
        OsRng.fill_bytes(&mut bytes);
        let secret = TotpSecret::from_bytes(bytes);
        let factor_id = Uuid::now_v7();
        sqlx::query("INSERT INTO totp_factors (factor_id, user_id, secret) VALUES ($1, $2, $3)")
            .bind(factor_id)
            .bind(user_id)
            .bind(self.secrets.seal(factor_id, &secret))
            .execute(&self.pool)
            .await?;
        Ok(TotpEnrolment {
            factor_id,
            secret: secret.base32(),
            otpauth_uri: secret.otpauth_uri(&self.issuer, &account),
        })
    }

    /// Enables the factor when `code` is its current one; the person's
    /// first factor also gets a set of recovery codes. The code proves the
    /// factor in `session_id`, the person's own session, as a step-up would.
    pub async fn confirm_totp(
        &self,
        context: &RequestContext,
        actor: &Actor,
        (user_id, session_id): (Uuid, Uuid),
        factor_id: Uuid,
        code: TotpCode,
    ) -> Result<Confirmed, AppError> {
        let pending: Option<(Vec<u8>, bool, Option<i64>)> = sqlx::query_as(
            "SELECT secret, enabled, last_used_step FROM totp_factors \
             WHERE factor_id = $1 AND user_id = $2",
        )
        .bind(factor_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((sealed, false, last)) = pending else {
            return Err(AppError::NotFound("second factor"));
        };
        let secret = self.open(factor_id, &sealed)?;
        let step = secret
            .verify(&code, Utc::now().timestamp(), last.map(step_of))
            .map_err(|_| wrong_code())?;
        if !self.mark_used(factor_id, step).await? {
            return Err(wrong_code());
        }
        let command = SecondFactorCommand::EnableTotp { factor_id };
        self.enabled_with(
            context,
            actor,
            (user_id, session_id),
            (command, ProofMethod::Totp),
        )
        .await
    }

    /// Runs `command`, which enables a factor the person just proved in
    /// `session_id` with `method`; their first factor also gets recovery codes.
    async fn enabled_with(
        &self,
        context: &RequestContext,
        actor: &Actor,
        (user_id, session_id): (Uuid, Uuid),
        (command, method): (SecondFactorCommand, ProofMethod),
    ) -> Result<Confirmed, AppError> {
        let factors = self.factors.load(&user_id.to_string()).await?;
        let mut position = self.execute(context, actor, user_id, command).await?;
        let mut recovery_codes = None;
        if factors.recovery_codes_left() == 0 {
            let (codes, generated) = self.new_recovery_codes(context, actor, user_id).await?;
            position = generated;
            recovery_codes = Some(codes);
        }
        // The factor is enabled and the codes are to be shown: a failure to
        // record the proof only means a step-up later.
        let position = match self
            .record_verification(context, user_id, session_id, method)
            .await
        {
            Ok(recorded) => recorded,
            Err(error) => {
                tracing::warn!(%user_id, %error, "an enrolment's proof was not recorded");
                position
            }
        };
        Ok(Confirmed {
            position,
            recovery_codes,
        })
    }

    /// Removes a factor (an app or a passkey): the person's own, or
    /// another's by an actor who holds everything that person holds.
    pub async fn remove(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
        factor_id: Uuid,
    ) -> Result<i64, AppError> {
        self.power.require_outranks(actor, user_id).await?;
        let enabled = self.factors.load(&user_id.to_string()).await?;
        let command = if enabled.totp_factors().contains(&factor_id) {
            SecondFactorCommand::RemoveTotp { factor_id }
        } else if enabled.passkeys().contains(&factor_id) {
            SecondFactorCommand::RemovePasskey { factor_id }
        } else {
            // An enrolment never confirmed is only forgotten.
            let forgotten: i64 = sqlx::query_scalar(
                "WITH app AS (DELETE FROM totp_factors \
                              WHERE factor_id = $1 AND user_id = $2 AND NOT enabled RETURNING 1), \
                      key AS (DELETE FROM passkeys \
                              WHERE factor_id = $1 AND user_id = $2 AND NOT enabled RETURNING 1) \
                 SELECT (SELECT count(*) FROM app) + (SELECT count(*) FROM key)",
            )
            .bind(factor_id)
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
            return match forgotten {
                0 => Err(AppError::NotFound("second factor")),
                _ => Ok(0),
            };
        };
        self.execute(context, actor, user_id, command).await
    }

    /// A new set of recovery codes, replacing the old ones.
    pub async fn new_recovery_codes(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<(Vec<RecoveryCode>, i64), AppError> {
        let codes = RecoveryCode::generate_set();
        let code_hashes = codes.iter().map(RecoveryCode::digest).collect();
        let position = self
            .execute(
                context,
                actor,
                user_id,
                SecondFactorCommand::GenerateRecoveryCodes { code_hashes },
            )
            .await?;
        Ok((codes, position))
    }

    /// The person's factors (enabled or being enrolled) and how many
    /// recovery codes are left.
    pub async fn list(&self, user_id: Uuid) -> Result<(Vec<FactorRow>, i64), AppError> {
        let factors = sqlx::query_as(
            "SELECT factor_id, 'totp' AS kind, NULL::text AS name, enabled, created_at, enabled_at \
             FROM totp_factors WHERE user_id = $1 \
             UNION ALL \
             SELECT factor_id, 'passkey', name, enabled, created_at, enabled_at \
             FROM passkeys WHERE user_id = $1 \
             ORDER BY created_at, factor_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((factors, left))
    }

    /// Whether a login of `user_id` needs a second step.
    pub async fn required(&self, user_id: Uuid) -> Result<bool, AppError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM enabled_second_factors WHERE user_id = $1)",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records that `user_id` proved a factor with `method` in
    /// `session_id` (at a login's second step, or a step-up).
    pub async fn record_verification(
        &self,
        context: &RequestContext,
        user_id: Uuid,
        session_id: Uuid,
        method: ProofMethod,
    ) -> Result<i64, AppError> {
        let command = SecondFactorCommand::RecordVerification { session_id, method };
        let outcome = self
            .factors
            .execute_retrying_conflicts(
                &user_id.to_string(),
                || command.clone(),
                &context.metadata_as(Some(user_id)),
            )
            .await?;
        Ok(outcome.position)
    }

    /// How and when a second factor was last proved in `session_id`.
    pub async fn verification(
        &self,
        session_id: Uuid,
    ) -> Result<Option<(ProofMethod, DateTime<Utc>)>, AppError> {
        let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT method, verified_at FROM second_factor_verifications WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(method, at)| Some((ProofMethod::parse(&method)?, at))))
    }

    /// Whether `proof` is right for `user_id` now. A right one is used up:
    /// an app's code for its time step, a recovery code for good.
    /// `passkey_state` is the state of the passkey ceremony the proof
    /// answers (a login's challenge, or a step-up's), if one was begun.
    pub async fn check(
        &self,
        context: &RequestContext,
        user_id: Uuid,
        proof: &Proof,
        passkey_state: Option<serde_json::Value>,
    ) -> Result<bool, AppError> {
        match proof {
            Proof::Code(code) => self.check_code(user_id, code).await,
            Proof::Passkey(credential) => match passkey_state {
                Some(state) => self.passkeys.verify(user_id, state, credential).await,
                None => Ok(false),
            },
            Proof::RecoveryCode(code) => {
                let command = SecondFactorCommand::UseRecoveryCode {
                    code_hash: code.digest(),
                };
                let metadata = context.metadata_as(Some(user_id));
                match self
                    .factors
                    .execute(&user_id.to_string(), command, &metadata)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(cqrs_es::AggregateError::UserError(
                        SecondFactorError::RecoveryCodeNotValid,
                    ))
                    | Err(cqrs_es::AggregateError::AggregateConflict) => Ok(false),
                    Err(other) => Err(other.into()),
                }
            }
        }
    }

    async fn check_code(&self, user_id: Uuid, code: &TotpCode) -> Result<bool, AppError> {
        let enabled: Vec<(Uuid, Vec<u8>, Option<i64>)> = sqlx::query_as(
            "SELECT factor_id, secret, last_used_step FROM totp_factors \
             WHERE user_id = $1 AND enabled",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let now = Utc::now().timestamp();
        for (factor_id, sealed, last) in enabled {
            let secret = self.open(factor_id, &sealed)?;
            if let Ok(step) = secret.verify(code, now, last.map(step_of)) {
                return self.mark_used(factor_id, step).await;
            }
        }
        Ok(false)
    }

    /// Records `step` as the factor's last used one, unless another request
    /// used it (or a later one) first: then the code was a replay.
    async fn mark_used(&self, factor_id: Uuid, step: u64) -> Result<bool, AppError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let marked = sqlx::query(
            "UPDATE totp_factors SET last_used_step = $2 \
             WHERE factor_id = $1 AND (last_used_step IS NULL OR last_used_step < $2)",
        )
        .bind(factor_id)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(marked.rows_affected() == 1)
    }

    /// A challenge for the second step of `user_id`'s login: the text to
    /// hand to the client, which the service keeps only as a digest (with
    /// a passkey ceremony's state, when the person has a passkey).
    pub async fn challenge(&self, user_id: Uuid) -> Result<Challenge, AppError> {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let challenge = URL_SAFE_NO_PAD.encode(bytes);
        let ceremony = self.passkeys.authentication(user_id).await?;
        let (passkey, state) = ceremony.unzip();
        sqlx::query(
            "INSERT INTO login_challenges (challenge_hash, user_id, expires_at, passkey_state) \
             VALUES ($1, $2, now() + $3::interval, $4)",
        )
        .bind(digest(&challenge))
        .bind(user_id)
        .bind(format!("{} seconds", CHALLENGE_LIFETIME.num_seconds()))
        .bind(state)
        .execute(&self.pool)
        .await?;
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT kind FROM enabled_second_factors WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let methods = [ProofMethod::Totp, ProofMethod::Passkey]
            .into_iter()
            .filter(|method| kinds.iter().any(|kind| kind == method.as_str()))
            .chain([ProofMethod::RecoveryCode])
            .map(ProofMethod::as_str)
            .collect();
        Ok(Challenge {
            challenge,
            methods,
            passkey,
        })
    }

    /// The person a live, unused `challenge` was issued to, and its
    /// passkey ceremony's state.
    pub async fn challenged(
        &self,
        challenge: &str,
    ) -> Result<Option<(Uuid, Option<serde_json::Value>)>, AppError> {
        Ok(sqlx::query_as(
            "SELECT user_id, passkey_state FROM login_challenges \
             WHERE challenge_hash = $1 AND used_at IS NULL AND expires_at > now()",
        )
        .bind(digest(challenge))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Uses `challenge` up; `false` if it was used, or ran out, meanwhile.
    pub async fn use_challenge(&self, challenge: &str) -> Result<bool, AppError> {
        let used = sqlx::query(
            "UPDATE login_challenges SET used_at = now() \
             WHERE challenge_hash = $1 AND used_at IS NULL AND expires_at > now()",
        )
        .bind(digest(challenge))
        .execute(&self.pool)
        .await?;
        Ok(used.rows_affected() == 1)
    }

    fn open(&self, factor_id: Uuid, sealed: &[u8]) -> Result<TotpSecret, AppError> {
        self.secrets
            .open(factor_id, sealed)
            .map_err(|broken| AppError::Unexpected(broken.into()))
    }

    async fn execute(
        &self,
        context: &RequestContext,
        actor: &Actor,
        user_id: Uuid,
        command: SecondFactorCommand,
    ) -> Result<i64, AppError> {
        let outcome = self
            .factors
            .execute(&user_id.to_string(), command, &context.metadata_by(actor))
            .await?;
        Ok(outcome.position)
    }
}

fn step_of(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}

fn digest(text: &str) -> String {
    HexDigest::of(text.as_bytes()).to_string()
}

fn wrong_code() -> AppError {
    AppError::Invalid {
        field: "code",
        message: "is not the authenticator's current code",
    }
}
