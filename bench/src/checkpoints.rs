//! Polls `projection_checkpoints` every 2 ms on a connection of its own and
//! records each advance of users_view with the time it was first seen.
//!
//! More precise than timing `GET /v1/users/{id}?min_position=N`, which adds an
//! HTTP round trip, a lookup of N in the event log and the API's own wake-up
//! (a notification, or a re-read every 200 ms), and which would put the
//! measuring load on the API being measured.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infra::event_log::LogPosition;
use projector::projection::CHECKPOINT;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

use crate::run::AbortOnDrop;

pub const POLL_EVERY: Duration = Duration::from_millis(2);
/// The checkpoint had reached `position` by `at` (the end of the poll that saw it);
/// it had not at the start of the poll before, `window` earlier.
#[derive(Clone, Copy, Debug)]
pub struct Advance {
    pub at: Instant,
    pub window: Duration,
    pub position: LogPosition,
}

#[derive(Debug, Default)]
pub struct CheckpointLog {
    pub advances: Vec<Advance>,
    pub polls: u64,
    pub poll_time: Duration,
    pub error: Option<String>,
}

impl CheckpointLog {
    /// The first advance at or past `target` (advances only move forward).
    pub fn applied(&self, target: LogPosition) -> Option<Advance> {
        let index = self
            .advances
            .partition_point(|advance| advance.position < target);
        self.advances.get(index).copied()
    }

    pub fn latest(&self) -> Option<LogPosition> {
        self.advances.last().map(|advance| advance.position)
    }
}

pub type SharedCheckpoints = Arc<Mutex<CheckpointLog>>;

pub async fn start(
    database_url: &SecretString,
) -> anyhow::Result<(SharedCheckpoints, AbortOnDrop)> {
    let mut connection = PgConnection::connect(database_url.expose_secret()).await?;
    let log = SharedCheckpoints::default();
    let shared = log.clone();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<LogPosition> = None;
        let mut previous_start = Instant::now();
        loop {
            ticks.tick().await;
            let started = Instant::now();
            let row = CHECKPOINT.load(&mut connection).await;
            let finished = Instant::now();
            let mut log = shared.lock().expect("checkpoint log");
            log.polls += 1;
            log.poll_time += finished - started;
            match row {
                Ok(position) if last != Some(position) => {
                    last = Some(position);
                    log.advances.push(Advance {
                        at: finished,
                        window: finished - previous_start,
                        position,
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    log.error = Some(format!("polling projection_checkpoints: {error}"));
                    return;
                }
            }
            previous_start = started;
        }
    });
    Ok((log, AbortOnDrop(task)))
}
