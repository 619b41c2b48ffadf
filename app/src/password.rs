//! argon2id hashing and verification. It is deliberately slow, so it runs on
//! the blocking pool, never on an actix worker thread, and behind a bounded
//! queue: at most one hash per core runs, at most `queue_limit` more wait,
//! and anything beyond that is refused at once (503) instead of piling up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::{Password, PasswordHash};
use tokio::sync::Semaphore;

use crate::AppError;

/// How long a refused caller is told to wait before retrying.
const RETRY_AFTER_SECONDS: u64 = 1;

pub struct Passwords {
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
    /// Verified against when the email is unknown, so that path costs one
    /// hash too and answers in the same time as a wrong password.
    decoy: PasswordHash,
}

/// The outcome of checking a password against a stored hash.
pub struct Verified {
    pub matches: bool,
    /// A fresh hash of the same password when the stored one used older
    /// parameters than [`PasswordHash::COST`].
    pub rehashed: Option<PasswordHash>,
}

impl Passwords {
    pub async fn new(queue_limit: usize) -> anyhow::Result<Arc<Self>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let decoy = tokio::task::spawn_blocking(|| hash_now("decoy password for unknown emails"))
            .await
            .context("hashing the decoy password")??;
        Ok(Arc::new(Self {
            running: Arc::new(Semaphore::new(cores)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: cores + queue_limit,
            decoy,
        }))
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, AppError> {
        self.on_blocking_pool(move || hash_now(password.expose()))
            .await
    }

    /// Checks `password` against `stored`, or against the decoy when there
    /// is no stored hash (the answer is then always "no match").
    pub async fn verify(
        &self,
        password: String,
        stored: Option<PasswordHash>,
    ) -> Result<Verified, AppError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.clone());
        let verified = self
            .on_blocking_pool(move || verify_now(&password, &stored))
            .await?;
        metrics::counter!("password_verifications_total").increment(1);
        Ok(Verified {
            matches: known && verified.matches,
            ..verified
        })
    }

    /// Runs `work` once a core is free. The place in the queue and the core
    /// go with the work, not with this future: a caller that stops waiting
    /// (a client that disconnected) frees them only when the work has ended.
    async fn on_blocking_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashingError> + Send + 'static,
    ) -> Result<T, AppError> {
        let admission = self.admit()?;
        let core = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(HashingError::from)?;
        let result = tokio::task::spawn_blocking(move || {
            let _held = (admission, core);
            work()
        })
        .await
        .map_err(HashingError::from)?;
        Ok(result?)
    }

    fn admit(&self) -> Result<Admission, AppError> {
        let admitted = self.admitted.fetch_add(1, Ordering::SeqCst);
        let admission = Admission(self.admitted.clone());
        if admitted >= self.capacity {
            metrics::counter!("password_hashing_refused_total").increment(1);
            return Err(AppError::Overloaded {
                retry_after_seconds: RETRY_AFTER_SECONDS,
            });
        }
        Ok(admission)
    }
}

/// Why a hash could not be computed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("argon2 failed: {0}")]
    Argon2(argon2::password_hash::Error),
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("the hashing task did not finish")]
    Task(#[from] tokio::task::JoinError),
    #[error("the hashing pool is closed")]
    Closed(#[from] tokio::sync::AcquireError),
}

/// A place in the hashing queue, given back when dropped.
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hasher() -> Argon2<'static> {
    let cost = PasswordHash::COST;
    let params = Params::new(cost.memory_kib, cost.passes, cost.lanes, None)
        .expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> Result<PasswordHash, HashingError> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = hasher()
        .hash_password(password.as_bytes(), &salt)
        .map_err(HashingError::Argon2)?;
    Ok(PasswordHash::new(hash.to_string()))
}

fn verify_now(password: &str, stored: &PasswordHash) -> Result<Verified, HashingError> {
    let parsed = argon2::PasswordHash::new(stored.as_str()).map_err(HashingError::Argon2)?;
    let matches = hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    let rehashed = if matches && !uses_current_cost(&parsed) {
        Some(hash_now(password)?)
    } else {
        None
    };
    Ok(Verified { matches, rehashed })
}

fn uses_current_cost(hash: &argon2::PasswordHash<'_>) -> bool {
    let cost = PasswordHash::COST;
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    hash.algorithm == Algorithm::Argon2id.ident()
        && params.m_cost() == cost.memory_kib
        && params.t_cost() == cost.passes
        && params.p_cost() == cost.lanes
}

/// Hashes with explicit (older) parameters; for tests of rehash-on-login.
pub fn hash_with_cost(
    password: &str,
    memory_kib: u32,
    passes: u32,
) -> Result<PasswordHash, HashingError> {
    let params = Params::new(memory_kib, passes, 1, None).map_err(HashingError::Params)?;
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map_err(HashingError::Argon2)?;
    Ok(PasswordHash::new(hash.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_declared_cost() {
        let passwords = Passwords::new(4).await.unwrap();
        let password = Password::parse("correct horse battery staple").unwrap();
        let hash = passwords.hash(password).await.unwrap();
        let cost = PasswordHash::COST;
        let expected = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            cost.memory_kib, cost.passes, cost.lanes
        );
        assert!(hash.as_str().starts_with(&expected));
    }

    #[tokio::test]
    async fn a_hash_with_older_parameters_is_rehashed_on_a_match_only() {
        let passwords = Passwords::new(4).await.unwrap();
        let old = hash_with_cost("correct horse battery staple", 8 * 1024, 1).unwrap();
        let wrong = passwords
            .verify("wrong".into(), Some(old.clone()))
            .await
            .unwrap();
        assert!(!wrong.matches && wrong.rehashed.is_none());
        let right = passwords
            .verify("correct horse battery staple".into(), Some(old))
            .await
            .unwrap();
        assert!(right.matches);
        let cost = PasswordHash::COST;
        let rehashed = right.rehashed.expect("rehashed");
        assert!(rehashed
            .as_str()
            .contains(&format!("m={}", cost.memory_kib)));
    }

    #[tokio::test]
    async fn an_unknown_user_never_matches_even_the_decoy_password() {
        let passwords = Passwords::new(4).await.unwrap();
        let verified = passwords
            .verify("decoy password for unknown emails".into(), None)
            .await
            .unwrap();
        assert!(!verified.matches);
    }

    #[tokio::test]
    async fn beyond_the_queue_limit_callers_are_refused_not_queued() {
        let passwords = Passwords::new(0).await.unwrap();
        let flood: Vec<_> = (0..16)
            .map(|_| passwords.verify("x".into(), None))
            .collect();
        let results = futures_util::future::join_all(flood).await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(AppError::Overloaded { .. })))
            .count();
        assert!(refused > 0, "no caller was refused");
        assert!(refused < 16, "every caller was refused");
    }

    /// A caller that goes away (a client that disconnected) must not free
    /// its place while its hash still runs, or disconnecting clients could
    /// run any number of hashes at once.
    #[tokio::test]
    async fn a_dropped_caller_keeps_its_place_until_its_hash_ends() {
        let passwords = Passwords::new(0).await.unwrap();
        let permits = passwords.running.available_permits();
        let (started, has_started) = std::sync::mpsc::channel();
        let (finish, may_finish) = std::sync::mpsc::channel::<()>();
        let mut call = Box::pin(passwords.on_blocking_pool(move || {
            let _ = started.send(());
            let _ = may_finish.recv();
            Ok(())
        }));
        tokio::select! {
            _ = &mut call => panic!("the work ended before it was released"),
            _ = tokio::task::spawn_blocking(move || has_started.recv()) => {}
        }
        drop(call);
        assert_eq!(passwords.admitted.load(Ordering::SeqCst), 1, "admission");
        assert_eq!(passwords.running.available_permits(), permits - 1, "core");
        finish.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while passwords.admitted.load(Ordering::SeqCst) > 0 {
            assert!(std::time::Instant::now() < deadline, "never released");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(passwords.running.available_permits(), permits);
    }
}
