//! Access tokens: short-lived JWTs signed with the current key. Verifying
//! pins the algorithm, requires a known `kid`, and checks `iss`, `aud` and
//! `exp`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, decode_header, encode, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use domain::second_factor::AuthenticationMethod;

use crate::keys::{SigningKeys, ALGORITHM};

/// Seconds of clock skew tolerated on `exp` between processes.
const LEEWAY_SECONDS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    /// The session of a person's token; absent from a machine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// The API key a machine's token was granted to (RFC 9068's
    /// `client_id`); `sub` is then its service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
    /// A machine's granted permissions, space-separated (RFC 6749 §3.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How the person authenticated (RFC 8176 values); absent for a machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// When the person authenticated (seconds since the epoch, as OpenID
    /// Connect's `auth_time`): the session's start, kept by every refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    pub roles: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token names an unknown key")]
    UnknownKey,
    #[error("the token is not valid: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

pub struct AccessTokens {
    keys: Arc<SigningKeys>,
    issuer: String,
    audience: String,
    lifetime: chrono::Duration,
}

pub struct Issued {
    pub token: String,
    pub expires_in: i64,
}

impl AccessTokens {
    pub fn new(
        keys: Arc<SigningKeys>,
        issuer: String,
        audience: String,
        lifetime: chrono::Duration,
    ) -> Self {
        Self {
            keys,
            issuer,
            audience,
            lifetime,
        }
    }

    /// A person's token for `session_id`, in which they authenticated at
    /// `authenticated_at` with `methods`.
    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        roles: Vec<String>,
        (methods, authenticated_at): (&[AuthenticationMethod], DateTime<Utc>),
        now: DateTime<Utc>,
    ) -> anyhow::Result<Issued> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id,
            sid: Some(session_id),
            client_id: None,
            scope: None,
            amr: Some(methods.iter().map(|m| m.as_str().to_owned()).collect()),
            auth_time: Some(authenticated_at.timestamp()),
            roles,
            exp: (now + self.lifetime).timestamp(),
            iat: now.timestamp(),
            jti: Uuid::new_v4(),
        };
        self.sign(&claims)
    }

    /// A token for a service account acting with the key `key_id`, granted
    /// `scope` (RFC 6749 §4.4).
    pub fn issue_to_machine(
        &self,
        service_account_id: Uuid,
        key_id: Uuid,
        scope: &std::collections::BTreeSet<domain::Permission>,
        roles: Vec<String>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Issued> {
        let scope: Vec<&str> = scope.iter().map(|p| p.as_str()).collect();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: service_account_id,
            sid: None,
            client_id: Some(key_id),
            scope: Some(scope.join(" ")),
            amr: None,
            auth_time: None,
            roles,
            exp: (now + self.lifetime).timestamp(),
            iat: now.timestamp(),
            jti: Uuid::new_v4(),
        };
        self.sign(&claims)
    }

    fn sign(&self, claims: &AccessClaims) -> anyhow::Result<Issued> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.keys.signing_kid().to_owned());
        let token = encode(&header, claims, self.keys.encoding_key())?;
        Ok(Issued {
            token,
            expires_in: self.lifetime.num_seconds(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = decode_header(token)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.decoding_key(kid))
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        Ok(decode::<AccessClaims>(token, key, &validation)?.claims)
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }
}
