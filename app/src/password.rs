//! argon2id hashing and verification. It is deliberately slow, so it runs on
//! the blocking pool, never on an actix worker thread, and behind a bounded
//! queue: at most one hash per core runs, at most `queue_limit` more wait,
//! and anything beyond that is refused at once (503) instead of piling up.
//! Verifications also count per account: a flood aimed at one account
//! (guessing its password through login or password change) holds at most
//! `PER_ACCOUNT` places and is refused beyond them (429), so it cannot take
//! the whole queue from everyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::{Password, PasswordHash};
use tokio::sync::Semaphore;

use crate::AppError;

/// How long a refused caller is told to wait before retrying.
const RETRY_AFTER_SECONDS: u64 = 1;
/// Verifications of one account that may run or wait at once.
const PER_ACCOUNT: usize = 2;

pub struct Passwords {
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
    /// Verifications in flight per account key.
    per_account: Arc<Mutex<HashMap<String, usize>>>,
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
            per_account: Arc::default(),
            decoy,
        }))
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, AppError> {
        self.on_blocking_pool(move || hash_now(password.expose()))
            .await
    }

    /// Checks `password` against `stored`, or against the decoy when there
    /// is no stored hash (the answer is then always "no match"). `account`
    /// is the key the per-account bound counts by (the email's uniqueness
    /// key, whether or not the account exists).
    pub async fn verify(
        &self,
        account: &str,
        password: String,
        stored: Option<PasswordHash>,
    ) -> Result<Verified, AppError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.clone());
        let account = self.admit_account(account)?;
        let verified = self
            .on_blocking_pool(move || {
                let _account = account;
                verify_now(&password, &stored)
            })
            .await?;
        metrics::counter!(crate::metrics::PASSWORD_VERIFICATIONS).increment(1);
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

    fn admit_account(&self, account: &str) -> Result<AccountAdmission, AppError> {
        let mut in_flight = self.per_account.lock().expect("per-account counts");
        let count = in_flight.entry(account.to_owned()).or_insert(0);
        if *count >= PER_ACCOUNT {
            metrics::counter!(crate::metrics::HASHING_REFUSED_PER_ACCOUNT).increment(1);
            return Err(AppError::TooManyRequests {
                retry_after_seconds: RETRY_AFTER_SECONDS,
            });
        }
        *count += 1;
        Ok(AccountAdmission {
            counts: self.per_account.clone(),
            account: account.to_owned(),
        })
    }

    fn admit(&self) -> Result<Admission, AppError> {
        let admitted = self.admitted.fetch_add(1, Ordering::SeqCst);
        let admission = Admission(self.admitted.clone());
        if admitted >= self.capacity {
            metrics::counter!(crate::metrics::HASHING_REFUSED).increment(1);
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
    #[error("argon2 failed")]
    Argon2(#[source] argon2::password_hash::Error),
    #[error("invalid argon2 parameters")]
    Params(#[source] argon2::Error),
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

/// A verification of one account in flight, given back when dropped (with
/// the work, not with the caller: see `on_blocking_pool`).
struct AccountAdmission {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    account: String,
}

impl Drop for AccountAdmission {
    fn drop(&mut self) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        if let Some(count) = counts.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.account);
            }
        }
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
            .verify("a", "wrong".into(), Some(old.clone()))
            .await
            .unwrap();
        assert!(!wrong.matches && wrong.rehashed.is_none());
        let right = passwords
            .verify("a", "correct horse battery staple".into(), Some(old))
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
            .verify("a", "decoy password for unknown emails".into(), None)
            .await
            .unwrap();
        assert!(!verified.matches);
    }

    #[tokio::test]
    async fn beyond_the_queue_limit_callers_are_refused_not_queued() {
        let passwords = Passwords::new(0).await.unwrap();
        let accounts: Vec<String> = (0..16).map(|n| format!("account-{n}")).collect();
        let flood: Vec<_> = accounts
            .iter()
            .map(|account| passwords.verify(account, "x".into(), None))
            .collect();
        let results = futures_util::future::join_all(flood).await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(AppError::Overloaded { .. })))
            .count();
        assert!(refused > 0, "no caller was refused");
        assert!(refused < 16, "every caller was refused");
    }

    #[tokio::test]
    async fn one_account_holds_at_most_its_share_of_the_queue() {
        // given a queue with room for many
        let passwords = Passwords::new(64).await.unwrap();
        // when one account is guessed at eight times at once
        let guesses: Vec<_> = (0..8)
            .map(|_| passwords.verify("victim", "guess".into(), None))
            .collect();
        let other = passwords.verify("bystander", "x".into(), None);
        let (results, other) = tokio::join!(futures_util::future::join_all(guesses), other);
        // then only PER_ACCOUNT of them run, the rest are told to retry
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(AppError::TooManyRequests { .. })))
            .count();
        assert_eq!(refused, 8 - PER_ACCOUNT);
        assert!(other.is_ok(), "another account was refused");
        // and the account's places are given back afterwards
        assert!(passwords
            .verify("victim", "guess".into(), None)
            .await
            .is_ok());
        assert!(passwords.per_account.lock().unwrap().is_empty());
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
