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
use argon2::password_hash::SaltString;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHasher, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use domain::{Password, PasswordHash};
use tokio::sync::Semaphore;

use crate::AppError;

/// How long a refused caller is told to wait before retrying.
const RETRY_AFTER_SECONDS: u64 = 1;
/// Verifications of one account that may run or wait at once.
const PER_ACCOUNT: usize = 2;

pub struct Passwords {
    running: Arc<Semaphore>,
    /// One per core: a hash takes one for as long as it holds a core.
    workspaces: Arc<Mutex<Vec<Workspace>>>,
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
        let decoy = tokio::task::spawn_blocking(|| {
            hash_now(
                "decoy password for unknown emails",
                &mut Workspace::default(),
            )
        })
        .await
        .context("hashing the decoy password")??;
        Ok(Arc::new(Self {
            running: Arc::new(Semaphore::new(cores)),
            workspaces: Arc::new(Mutex::new(
                (0..cores).map(|_| Workspace::default()).collect(),
            )),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: cores + queue_limit,
            per_account: Arc::default(),
            decoy,
        }))
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, AppError> {
        self.on_blocking_pool(move |workspace| hash_now(password.expose(), workspace))
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
            .on_blocking_pool(move |workspace| {
                let _account = account;
                verify_now(&password, &stored, workspace)
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
        work: impl FnOnce(&mut Workspace) -> Result<T, HashingError> + Send + 'static,
    ) -> Result<T, AppError> {
        let admission = self.admit()?;
        let core = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(HashingError::from)?;
        let workspaces = self.workspaces.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _held = (admission, core);
            let taken = workspaces.lock().expect("workspaces").pop();
            let mut workspace = taken.unwrap_or_default();
            let result = work(&mut workspace);
            workspaces.lock().expect("workspaces").push(workspace);
            result
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

/// argon2id's working memory (19 MiB at today's cost), kept and reused
/// instead of allocated for every hash: glibc's allocator kept the freed
/// blocks of concurrent hashes, fragmented, and the api's RSS passed 700 MiB
/// after a few dozen registrations (bench, "api RSS peak under load").
#[derive(Default)]
struct Workspace(Vec<Block>);

impl Workspace {
    /// The blocks `params` needs; grows once for a larger (older) cost.
    fn blocks_for(&mut self, params: &Params) -> &mut [Block] {
        let needed = params.block_count();
        if self.0.len() < needed {
            self.0.resize(needed, Block::default());
        }
        &mut self.0[..needed]
    }
}

const ALGORITHM: Algorithm = Algorithm::Argon2id;
const VERSION: Version = Version::V0x13;

fn hasher() -> Argon2<'static> {
    let cost = PasswordHash::COST;
    let params = Params::new(cost.memory_kib, cost.passes, cost.lanes, None)
        .expect("valid argon2 parameters");
    Argon2::new(ALGORITHM, VERSION, params)
}

/// `PasswordHasher::hash_password` of the argon2 crate, computed in
/// `workspace` instead of a fresh allocation; the same PHC string.
fn compute<'a>(
    hasher: &Argon2<'_>,
    algorithm: Algorithm,
    version: Version,
    password: &str,
    salt: Salt<'a>,
    workspace: &mut Workspace,
) -> Result<argon2::PasswordHash<'a>, HashingError> {
    let mut salt_buffer = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_buffer)
        .map_err(HashingError::Argon2)?;
    let params = hasher.params();
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = workspace.blocks_for(params);
    let output = Output::init_with(output_len, |out| {
        hasher.hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            out,
            &mut *blocks,
        )?;
        Ok(())
    })
    .map_err(HashingError::Argon2)?;
    Ok(argon2::PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(params).map_err(HashingError::Argon2)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

fn hash_now(password: &str, workspace: &mut Workspace) -> Result<PasswordHash, HashingError> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = compute(
        &hasher(),
        ALGORITHM,
        VERSION,
        password,
        salt.as_salt(),
        workspace,
    )?;
    Ok(PasswordHash::new(hash.to_string()))
}

fn verify_now(
    password: &str,
    stored: &PasswordHash,
    workspace: &mut Workspace,
) -> Result<Verified, HashingError> {
    let parsed = argon2::PasswordHash::new(stored.as_str()).map_err(HashingError::Argon2)?;
    let matches = matches(password, &parsed, workspace);
    let rehashed = if matches && !uses_current_cost(&parsed) {
        Some(hash_now(password, workspace)?)
    } else {
        None
    };
    Ok(Verified { matches, rehashed })
}

/// `PasswordVerifier::verify_password` of the argon2 crate, computed in
/// `workspace`: a hash that cannot be recomputed does not match. The
/// outputs are compared in constant time (`Output`'s equality).
fn matches(password: &str, stored: &argon2::PasswordHash<'_>, workspace: &mut Workspace) -> bool {
    let (Some(salt), Some(expected)) = (stored.salt, &stored.hash) else {
        return false;
    };
    let recomputed = (|| {
        let algorithm = Algorithm::try_from(stored.algorithm).map_err(HashingError::Argon2)?;
        let version = match stored.version {
            Some(version) => Version::try_from(version).map_err(HashingError::Params)?,
            None => Version::default(),
        };
        let params = Params::try_from(stored).map_err(HashingError::Argon2)?;
        let hasher = Argon2::new(algorithm, version, params);
        compute(&hasher, algorithm, version, password, salt, workspace)
    })();
    matches!(recomputed, Ok(computed) if computed.hash.as_ref() == Some(expected))
}

fn uses_current_cost(hash: &argon2::PasswordHash<'_>) -> bool {
    let cost = PasswordHash::COST;
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    hash.algorithm == ALGORITHM.ident()
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
    let hash = Argon2::new(ALGORITHM, VERSION, params)
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

    #[test]
    fn hashes_made_in_a_reused_workspace_are_the_argon2_crates_own() {
        use argon2::PasswordVerifier;
        let mut workspace = Workspace::default();
        let ours = hash_now("correct horse battery staple", &mut workspace).unwrap();
        let parsed = argon2::PasswordHash::new(ours.as_str()).unwrap();
        // The crate's own verifier accepts ours...
        assert!(hasher()
            .verify_password(b"correct horse battery staple", &parsed)
            .is_ok());
        // ...and ours accepts the crate's, at today's cost and an older one,
        // in the same workspace one after the other, and nothing else.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = hasher()
            .hash_password(b"correct horse battery staple", &salt)
            .unwrap()
            .to_string();
        let older = hash_with_cost("correct horse battery staple", 8 * 1024, 1).unwrap();
        for stored in [theirs.as_str(), older.as_str(), ours.as_str()] {
            let stored = argon2::PasswordHash::new(stored).unwrap();
            assert!(matches(
                "correct horse battery staple",
                &stored,
                &mut workspace
            ));
            assert!(!matches(
                "correct horse battery stapler",
                &stored,
                &mut workspace
            ));
        }
    }

    #[test]
    fn a_stored_hash_that_cannot_be_recomputed_does_not_match() {
        let mut workspace = Workspace::default();
        for stored in [
            // No output.
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA",
            // Another algorithm family's identifier.
            "$pbkdf2-sha256$i=1000$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            let parsed = argon2::PasswordHash::new(stored).unwrap();
            assert!(!matches("anything", &parsed, &mut workspace), "{stored}");
        }
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
        let mut call = Box::pin(passwords.on_blocking_pool(move |_| {
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
