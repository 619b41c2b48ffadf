//! argon2id hashing. It is deliberately slow, so it always runs on the
//! blocking pool, never on an actix worker thread.

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::{Password, PasswordHash};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

fn hasher() -> Argon2<'static> {
    let cost = PasswordHash::COST;
    let params = Params::new(cost.memory_kib, cost.passes, cost.lanes, None)
        .expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// At most one hash per core at a time: more would only share the cores
/// (each hash slower) and hold 19 MiB apiece; the rest wait their turn.
fn hashing_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Semaphore::new(cores)
    })
}

pub async fn hash(password: Password) -> anyhow::Result<PasswordHash> {
    let _slot = hashing_slots().acquire().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        let hash = hasher()
            .hash_password(password.expose().as_bytes(), &salt)
            .map_err(|error| anyhow::anyhow!("argon2 failed: {error}"))?;
        Ok(PasswordHash::new(hash.to_string()))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_declared_cost() {
        let password = Password::parse("correct horse battery staple").unwrap();
        let hash = hash(password).await.unwrap();
        let cost = PasswordHash::COST;
        let expected = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            cost.memory_kib, cost.passes, cost.lanes
        );
        assert!(hash.as_str().starts_with(&expected));
    }
}
