//! argon2id hashes per second on this machine, with the parameters the API uses
//! (api/src/password.rs): the ceiling of the registration rate, since every
//! registration hashes one password on the API's blocking pool.

use anyhow::Context;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The API's cost, from the one place it is defined.
pub const COST: domain::HashingCost = domain::PasswordHash::COST;

/// One measurement: `hashes` done by `threads` threads in `elapsed`.
#[derive(Clone, Copy, Debug)]
pub struct Hashing {
    pub threads: usize,
    pub hashes: u64,
    pub elapsed: Duration,
}

impl Hashing {
    pub fn per_second(&self) -> f64 {
        self.hashes as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct HashRates {
    pub single: Hashing,
    pub parallel: Hashing,
}

/// Hashes for `duration` on one thread, then for `duration` on `threads` threads.
pub async fn measure(duration: Duration, threads: usize) -> anyhow::Result<HashRates> {
    tokio::task::spawn_blocking(move || {
        Ok(HashRates {
            single: hash_for(duration, 1)?,
            parallel: hash_for(duration, threads.max(1))?,
        })
    })
    .await?
}

fn hasher() -> anyhow::Result<Argon2<'static>> {
    let params =
        Params::new(COST.memory_kib, COST.passes, COST.lanes, None).context("argon2 parameters")?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Every thread hashes (a fresh salt each time, like the API) until the deadline
/// passes; the rate counts all hashes over the time the slowest thread took.
fn hash_for(duration: Duration, threads: usize) -> anyhow::Result<Hashing> {
    let started = Instant::now();
    let deadline = started + duration;
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(move || hash_until(deadline)))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("argon2 thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<(u64, Instant)>>>()
    })?;
    let hashes = counts.iter().map(|(count, _)| count).sum();
    let finished = counts.iter().map(|(_, at)| *at).max().unwrap_or(started);
    Ok(Hashing {
        threads,
        hashes,
        elapsed: finished - started,
    })
}

fn hash_until(deadline: Instant) -> anyhow::Result<(u64, Instant)> {
    let hasher = hasher()?;
    let mut hashes = 0;
    loop {
        let salt = SaltString::generate(&mut OsRng);
        hasher
            .hash_password(crate::load::PASSWORD.as_bytes(), &salt)
            .context("argon2 failed")?;
        hashes += 1;
        let now = Instant::now();
        if now >= deadline {
            return Ok((hashes, now));
        }
    }
}
