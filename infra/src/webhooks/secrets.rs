//! Signing secrets (`whsec_` + base64 of 32 random bytes, as Standard
//! Webhooks writes them). Kept in `webhook_secrets`, never in an event, in
//! `secrecy` types in memory; shown to the integrator once.

use base64::Engine;
use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

const PREFIX: &str = "whsec_";

/// A webhook signing secret. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct SigningSecret(SecretString);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

impl SigningSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        Self(SecretString::from(format!("{PREFIX}{encoded}")))
    }

    /// `whsec_…`: what the integrator is given and verifies with.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for SigningSecret {
    fn from(value: String) -> Self {
        Self(SecretString::from(value))
    }
}

pub struct SecretStore {
    pool: PgPool,
}

impl SecretStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn store(
        &self,
        secret_id: Uuid,
        webhook_id: Uuid,
        secret: &SigningSecret,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO webhook_secrets (secret_id, webhook_id, secret) VALUES ($1, $2, $3)",
        )
        .bind(secret_id)
        .bind(webhook_id)
        .bind(secret.expose())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a secret whose command failed (no event names it).
    pub async fn forget(&self, secret_id: Uuid) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM webhook_secrets WHERE secret_id = $1")
            .bind(secret_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The secrets with these ids, in the order asked; a missing one is left out.
    pub async fn load(&self, ids: &[Uuid]) -> sqlx::Result<Vec<SigningSecret>> {
        load(&self.pool, ids).await
    }
}

async fn load(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<SigningSecret>> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT secret_id, secret FROM webhook_secrets WHERE secret_id = ANY($1)")
            .bind(ids)
            .fetch_all(db)
            .await?;
    Ok(ids
        .iter()
        .filter_map(|id| rows.iter().find(|(found, _)| found == id))
        .map(|(_, secret)| SigningSecret::from(secret.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_prefixed_random_base64_and_not_shown_by_debug() {
        let one = SigningSecret::generate();
        let other = SigningSecret::generate();
        assert!(one.expose().starts_with(PREFIX));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&one.expose()[PREFIX.len()..])
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(one.expose(), other.expose());
        assert!(!format!("{one:?}").contains(&one.expose()[PREFIX.len()..]));
    }
}
