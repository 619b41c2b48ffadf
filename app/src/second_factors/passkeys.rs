//! Passkeys (WebAuthn credentials) as a second factor, verified by
//! webauthn-rs. A ceremony spans two requests: its state waits in the
//! database (`webauthn_ceremonies`, or a login's `login_challenges` row)
//! under a digest of a handle given to the client, single-use and
//! short-lived, so that any api process can finish it. A credential's
//! public key and signature counter are kept in `passkeys`; nothing here
//! is secret, and nothing of it enters an event.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::TimeDelta;
use serde_json::Value;
use sqlx::PgPool;
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::digest;
use crate::AppError;

/// How long a ceremony's second request may come after its first.
pub const CEREMONY_LIFETIME: TimeDelta = TimeDelta::minutes(5);

/// Who the relying party is: what browsers bind each passkey to.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    /// The registrable domain passkeys belong to (`example.com`).
    pub id: String,
    /// Every origin whose pages may use them (`https://app.example.com`).
    pub origins: Vec<Url>,
    /// Shown by the browser and the authenticator.
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the WebAuthn relying party is not valid (id {id:?}, origins {origins:?})")]
pub struct InvalidRelyingParty {
    id: String,
    origins: Vec<String>,
    #[source]
    cause: WebauthnError,
}

/// What a ceremony's state is kept for.
#[derive(Clone, Copy)]
enum Purpose {
    Registration,
    StepUp,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::StepUp => "step_up",
        }
    }
}

/// The person a passkey is registered for.
pub struct Holder<'a> {
    pub user_id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
}

/// A ceremony begun: the handle that finishes it and the options for the
/// browser (`{"publicKey": …}`, as `navigator.credentials` takes them
/// after `PublicKeyCredential.parse…OptionsFromJSON`).
pub struct Ceremony {
    pub handle: String,
    pub options: Value,
}

pub struct Passkeys {
    webauthn: Webauthn,
    pool: PgPool,
}

impl Passkeys {
    pub fn new(pool: PgPool, party: &RelyingParty) -> Result<Self, InvalidRelyingParty> {
        let invalid = |cause| InvalidRelyingParty {
            id: party.id.clone(),
            origins: party.origins.iter().map(Url::to_string).collect(),
            cause,
        };
        let (first, others) = party
            .origins
            .split_first()
            .ok_or_else(|| invalid(WebauthnError::Configuration))?;
        let builder = others.iter().fold(
            WebauthnBuilder::new(&party.id, first)
                .map_err(invalid)?
                .rp_name(&party.name),
            |builder, origin| builder.append_allowed_origin(origin),
        );
        Ok(Self {
            webauthn: builder.build().map_err(invalid)?,
            pool,
        })
    }

    /// Begins registering a passkey for `holder`, excluding the
    /// credentials they already have.
    pub async fn begin_registration(&self, holder: Holder<'_>) -> Result<Ceremony, AppError> {
        let exclude = self
            .enabled(holder.user_id)
            .await?
            .iter()
            .map(|passkey| passkey.cred_id().clone())
            .collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                holder.user_id,
                holder.email,
                holder.display_name,
                Some(exclude),
            )
            .map_err(unexpected)?;
        self.keep(holder.user_id, Purpose::Registration, &state, &options)
            .await
    }

    /// Verifies the browser's answer to a registration ceremony and keeps
    /// the credential, not yet enabled (the event enables it): its id.
    pub async fn finish_registration(
        &self,
        user_id: Uuid,
        handle: &str,
        credential: Value,
        name: &str,
    ) -> Result<Uuid, AppError> {
        let state: PasskeyRegistration = self
            .take(user_id, Purpose::Registration, handle)
            .await?
            .ok_or(AppError::NotFound("passkey registration"))?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(|_| not_a_credential("credential"))?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(|error| {
                tracing::info!(%user_id, %error, "a passkey registration did not verify");
                AppError::Invalid {
                    field: "credential",
                    message: "does not verify against the registration's challenge and origin",
                }
            })?;
        let factor_id = Uuid::now_v7();
        let stored = sqlx::query(
            "INSERT INTO passkeys (factor_id, user_id, credential_id, credential, name) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (credential_id) DO NOTHING",
        )
        .bind(factor_id)
        .bind(user_id)
        .bind(credential_id(&passkey))
        .bind(sqlx::types::Json(&passkey))
        .bind(name)
        .execute(&self.pool)
        .await?;
        match stored.rows_affected() {
            0 => Err(AppError::Invalid {
                field: "credential",
                message: "is registered already",
            }),
            _ => Ok(factor_id),
        }
    }

    /// Options and state for asserting one of `user_id`'s passkeys, if
    /// they have any: for a login's challenge row to keep.
    pub async fn authentication(&self, user_id: Uuid) -> Result<Option<(Value, Value)>, AppError> {
        let Some((options, state)) = self.start_authentication(user_id).await? else {
            return Ok(None);
        };
        Ok(Some((to_json(&options)?, to_json(&state)?)))
    }

    /// Begins a step-up with a passkey: `None` when the person has none.
    pub async fn begin_step_up(&self, user_id: Uuid) -> Result<Option<Ceremony>, AppError> {
        let Some((options, state)) = self.start_authentication(user_id).await? else {
            return Ok(None);
        };
        self.keep(user_id, Purpose::StepUp, &state, &options)
            .await
            .map(Some)
    }

    /// An assertion ceremony over `user_id`'s passkeys, if they have any.
    async fn start_authentication(
        &self,
        user_id: Uuid,
    ) -> Result<Option<(RequestChallengeResponse, PasskeyAuthentication)>, AppError> {
        let passkeys = self.enabled(user_id).await?;
        if passkeys.is_empty() {
            return Ok(None);
        }
        self.webauthn
            .start_passkey_authentication(&passkeys)
            .map(Some)
            .map_err(unexpected)
    }

    /// The state of a step-up ceremony of `user_id`, used up.
    pub async fn take_step_up(
        &self,
        user_id: Uuid,
        handle: &str,
    ) -> Result<Option<Value>, AppError> {
        self.take::<Value>(user_id, Purpose::StepUp, handle).await
    }

    /// Whether `credential` is a right assertion for the ceremony whose
    /// state this is, by one of `user_id`'s passkeys; its counter is then
    /// advanced, so that a cloned authenticator shows.
    pub async fn verify(
        &self,
        user_id: Uuid,
        state: Value,
        credential: &Value,
    ) -> Result<bool, AppError> {
        let state: PasskeyAuthentication = serde_json::from_value(state)
            .map_err(|error| AppError::Unexpected(anyhow::Error::new(error)))?;
        let credential: PublicKeyCredential =
            serde_json::from_value(credential.clone()).map_err(|_| not_a_credential("passkey"))?;
        let result = match self
            .webauthn
            .finish_passkey_authentication(&credential, &state)
        {
            Ok(result) => result,
            Err(error) => {
                tracing::info!(%user_id, %error, "a passkey assertion did not verify");
                return Ok(false);
            }
        };
        let mut tx = self.pool.begin().await?;
        let row: Option<(Uuid, sqlx::types::Json<Passkey>)> = sqlx::query_as(
            "SELECT factor_id, credential FROM passkeys \
             WHERE user_id = $1 AND credential_id = $2 AND enabled FOR UPDATE",
        )
        .bind(user_id)
        .bind(URL_SAFE_NO_PAD.encode::<&[u8]>(result.cred_id().as_ref()))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((factor_id, sqlx::types::Json(mut passkey))) = row else {
            return Ok(false);
        };
        passkey.update_credential(&result);
        sqlx::query(
            "UPDATE passkeys SET credential = $2, last_used_at = now() WHERE factor_id = $1",
        )
        .bind(factor_id)
        .bind(sqlx::types::Json(&passkey))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn enabled(&self, user_id: Uuid) -> Result<Vec<Passkey>, AppError> {
        let rows: Vec<sqlx::types::Json<Passkey>> = sqlx::query_scalar(
            "SELECT credential FROM passkeys WHERE user_id = $1 AND enabled ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|json| json.0).collect())
    }

    async fn keep(
        &self,
        user_id: Uuid,
        purpose: Purpose,
        state: &impl serde::Serialize,
        options: &impl serde::Serialize,
    ) -> Result<Ceremony, AppError> {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let handle = URL_SAFE_NO_PAD.encode(bytes);
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (ceremony_hash, user_id, purpose, state, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind(digest(&handle))
        .bind(user_id)
        .bind(purpose.as_str())
        .bind(to_json(state)?)
        .bind(CEREMONY_LIFETIME.num_seconds() as f64)
        .execute(&self.pool)
        .await?;
        Ok(Ceremony {
            handle,
            options: to_json(options)?,
        })
    }

    /// A live ceremony's state, used up by this call.
    async fn take<S: serde::de::DeserializeOwned>(
        &self,
        user_id: Uuid,
        purpose: Purpose,
        handle: &str,
    ) -> Result<Option<S>, AppError> {
        let state: Option<Value> = sqlx::query_scalar(
            "UPDATE webauthn_ceremonies SET used_at = now() \
             WHERE ceremony_hash = $1 AND user_id = $2 AND purpose = $3 \
               AND used_at IS NULL AND expires_at > now() \
             RETURNING state",
        )
        .bind(digest(handle))
        .bind(user_id)
        .bind(purpose.as_str())
        .fetch_optional(&self.pool)
        .await?;
        state
            .map(|state| {
                serde_json::from_value(state)
                    .map_err(|error| AppError::Unexpected(anyhow::Error::new(error)))
            })
            .transpose()
    }
}

/// The credential's id as browsers name it (base64url), its key in `passkeys`.
fn credential_id(passkey: &Passkey) -> String {
    URL_SAFE_NO_PAD.encode::<&[u8]>(passkey.cred_id().as_ref())
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, AppError> {
    serde_json::to_value(value).map_err(|error| AppError::Unexpected(anyhow::Error::new(error)))
}

fn unexpected(error: WebauthnError) -> AppError {
    AppError::Unexpected(anyhow::Error::new(error))
}

fn not_a_credential(field: &'static str) -> AppError {
    AppError::Invalid {
        field,
        message: "is not a WebAuthn credential as PublicKeyCredential.toJSON() gives it",
    }
}
