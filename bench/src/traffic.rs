//! The load generator: client tasks, each with its own keep-alive HTTP
//! connection (or database connection) and one request in flight, repeating
//! a step until a deadline, optionally paced to a fixed interval.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// What the clients did.
#[derive(Debug, Default)]
pub struct Driven {
    /// One latency per completed step, as the step measured it.
    pub latencies: Vec<Duration>,
    /// From the start to the last client's end.
    pub wall: Duration,
}

impl Driven {
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }

    /// Nearest-rank percentile in ms (NaN when nothing was measured).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies, p)
    }
}

pub fn percentile_ms(latencies: &[Duration], p: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// An HTTP client for one client task: one keep-alive connection.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
}

/// Runs one task per state until `duration` has passed; each repeats
/// `step`, which hands its state back with the latency to record. With
/// `every`, each task starts a step at most once per `every` (the tasks'
/// starts spread over the first interval), and right after the last one
/// when that took longer; otherwise back to back. The
/// first error stops the run.
pub async fn drive<S, F, Fut>(
    states: Vec<S>,
    duration: Duration,
    every: Option<Duration>,
    step: F,
) -> anyhow::Result<Driven>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<(S, Duration)>> + Send,
{
    let deadline = Instant::now() + duration;
    drive_until(states, move || Instant::now() >= deadline, every, step).await
}

/// [`drive`] until `done()` says so (checked before each step) instead of
/// for a fixed time.
pub async fn drive_until<S, F, Fut, D>(
    states: Vec<S>,
    done: D,
    every: Option<Duration>,
    step: F,
) -> anyhow::Result<Driven>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<(S, Duration)>> + Send,
    D: Fn() -> bool + Clone + Send + 'static,
{
    let started = Instant::now();
    let clients = states.len().max(1) as u32;
    let mut tasks = JoinSet::new();
    for (index, mut state) in states.into_iter().enumerate() {
        let (step, done) = (step.clone(), done.clone());
        let offset = every.map(|every| every * index as u32 / clients);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut next = Instant::now() + offset.unwrap_or_default();
            while !done() {
                if let Some(every) = every {
                    tokio::time::sleep_until(next.into()).await;
                    // Behind schedule, the next step starts when this one
                    // ends: no burst to catch up.
                    next = (next + every).max(Instant::now());
                }
                let (handed_back, latency) = step(state).await?;
                state = handed_back;
                latencies.push(latency);
            }
            anyhow::Ok(latencies)
        });
    }
    let mut driven = Driven::default();
    while let Some(joined) = tasks.join_next().await {
        driven.latencies.extend(joined??);
    }
    driven.wall = started.elapsed();
    Ok(driven)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&latencies, 50.0), 50.0);
        assert_eq!(percentile_ms(&latencies, 99.0), 99.0);
        assert!(percentile_ms(&[], 50.0).is_nan());
    }

    #[tokio::test]
    async fn every_client_steps_until_the_deadline_and_pacing_holds_them_back() {
        let step = |count: u32| async move { Ok((count + 1, Duration::from_millis(1))) };
        let free = drive(vec![0, 0], Duration::from_millis(50), None, step)
            .await
            .unwrap();
        let paced = drive(
            vec![0, 0],
            Duration::from_millis(50),
            Some(Duration::from_millis(20)),
            step,
        )
        .await
        .unwrap();
        assert!(free.latencies.len() > 100, "{}", free.latencies.len());
        assert!(
            (4..=8).contains(&paced.latencies.len()),
            "{}",
            paced.latencies.len()
        );
    }
}
