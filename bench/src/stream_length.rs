//! Command cost against stream length: two users seeded before the services
//! start, one with a short stream and one with a long one (a registration
//! and renames, like the export seed, the relay's and the projection's
//! checkpoints moved past them), then the same command (a rename by the
//! administrator) on each, alternately, and the ratio of the medians.

use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::profile;
use crate::traffic::percentile_ms;
use infra::event_log::LogPosition;

/// Events of the short stream.
pub const SHORT_EVENTS: usize = 10;
/// Renames of each user before the timing: the service may write a
/// snapshot on the first commands of a long stream.
const WARM_UP: usize = 5;

#[derive(Clone, Debug)]
pub struct Seeded {
    pub short: Uuid,
    pub long: Uuid,
    pub long_events: usize,
    /// The last seeded event (of the long stream).
    pub last: LogPosition,
    pub took: Duration,
}

/// Seeds both users in one transaction that also moves the relay's and the
/// projection's checkpoints past them.
pub async fn seed(db_url: &SecretString, long_events: usize) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let mut tx = db.begin().await?;
    let metadata = infra::testing::request_metadata(None, "bench");
    let short_last = infra::testing::seed_renamed_users(&mut tx, 1, SHORT_EVENTS - 1, &metadata)
        .await
        .context("seed the short stream")?;
    let long_last =
        infra::testing::seed_renamed_users(&mut tx, 1, long_events.max(2) - 1, &metadata)
            .await
            .context("seed the long stream")?;
    let short = owner_of(&mut tx, short_last).await?;
    let long = owner_of(&mut tx, long_last).await?;
    relay::RELAY_CHECKPOINT
        .advance(&mut *tx, long_last)
        .await
        .context("advance the relay checkpoint")?;
    projector::projection::CHECKPOINT
        .advance(&mut *tx, long_last)
        .await
        .context("advance the projection checkpoint")?;
    tx.commit().await.context("commit the stream seed")?;
    let _ = db.close().await;
    Ok(Seeded {
        short,
        long,
        long_events: long_events.max(2),
        last: long_last,
        took: started.elapsed(),
    })
}

async fn owner_of(db: &mut PgConnection, position: LogPosition) -> anyhow::Result<Uuid> {
    let id: String =
        sqlx::query_scalar("SELECT aggregate_id FROM events WHERE global_position = $1")
            .bind(position.global_position)
            .fetch_one(db)
            .await
            .context("the seeded stream's id")?;
    Uuid::parse_str(&id).context("the seeded stream's id")
}

/// Latencies of the rename on each stream.
#[derive(Debug, Default)]
pub struct Timed {
    pub short: Vec<Duration>,
    pub long: Vec<Duration>,
}

impl Timed {
    pub fn median_ms(&self) -> (f64, f64) {
        (
            percentile_ms(&self.short, 50.0),
            percentile_ms(&self.long, 50.0),
        )
    }
}

/// Renames both users (as `admin_token`) [`WARM_UP`] times untimed, then
/// `samples` times each, alternating which goes first.
pub async fn measure(
    base_url: &str,
    admin_token: &str,
    seeded: &Seeded,
    samples: usize,
) -> anyhow::Result<Timed> {
    let http = crate::traffic::http_client()?;
    let mut sent = 0u64;
    let mut rename = |user: Uuid| {
        sent += 1;
        let name = format!("Stream {sent}");
        let http = http.clone();
        async move {
            let started = Instant::now();
            profile::rename(&http, base_url, admin_token, user, &name).await?;
            anyhow::Ok(started.elapsed())
        }
    };
    for _ in 0..WARM_UP {
        rename(seeded.short).await?;
        rename(seeded.long).await?;
    }
    let mut timed = Timed::default();
    for round in 0..samples {
        if round % 2 == 0 {
            timed.short.push(rename(seeded.short).await?);
            timed.long.push(rename(seeded.long).await?);
        } else {
            timed.long.push(rename(seeded.long).await?);
            timed.short.push(rename(seeded.short).await?);
        }
    }
    Ok(timed)
}
