//! The fair limit of the command rate: storing the event a command stores.
//! Clients each on a connection of their own insert the newest stored
//! event's whole row (payload, metadata and the integrity columns) as the
//! next event of a stream of their own (autocommit), into a copy of
//! `events` with the same columns, defaults, constraints and indexes and
//! none of its triggers (`LIKE events INCLUDING ALL` copies no trigger).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS bench_events (LIKE events INCLUDING ALL)";

/// Every column a command's append writes, the ones with defaults left to them.
const NEWEST: &str = "SELECT aggregate_type, event_type, event_version, payload::text, \
     metadata::text, sealed::text, salts::text, prev_hash, hash, hash_version \
     FROM events ORDER BY global_position DESC LIMIT 1";

const INSERT: &str = "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, sealed, salts, prev_hash, hash, hash_version) \
     VALUES ($1, $2, $3, $4, $5, $6::json, $7::json, $8::json, $9::jsonb, $10, $11, $12)";

/// The newest stored event, as its columns' text.
#[derive(sqlx::FromRow, Debug)]
struct Row {
    aggregate_type: String,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
    sealed: String,
    salts: String,
    prev_hash: String,
    hash: String,
    hash_version: i16,
}

impl Row {
    fn bytes(&self) -> usize {
        [
            &self.payload,
            &self.metadata,
            &self.sealed,
            &self.salts,
            &self.prev_hash,
            &self.hash,
        ]
        .iter()
        .map(|text| text.len())
        .sum()
    }
}

/// One client: its connection, its stream and the row it appends.
pub struct Inserter {
    db: PgConnection,
    row: Arc<Row>,
    aggregate_id: String,
    sequence: i64,
}

/// The copy of `events`, and `clients` connections that append to it.
pub async fn prepare(db_url: &SecretString, clients: usize) -> anyhow::Result<Vec<Inserter>> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    sqlx::query(CREATE)
        .execute(&mut db)
        .await
        .context("create bench_events like events")?;
    let row: Row = sqlx::query_as(NEWEST)
        .fetch_one(&mut db)
        .await
        .context("the newest event's row")?;
    let row = Arc::new(row);
    let mut inserters = vec![Inserter::new(db, row.clone())];
    while inserters.len() < clients {
        let db = PgConnection::connect(db_url.expose_secret()).await?;
        inserters.push(Inserter::new(db, row.clone()));
    }
    Ok(inserters)
}

impl Inserter {
    fn new(db: PgConnection, row: Arc<Row>) -> Self {
        Self {
            db,
            row,
            aggregate_id: Uuid::new_v4().to_string(),
            sequence: 0,
        }
    }

    /// Bytes of JSON and hashes in each row.
    pub fn row_bytes(&self) -> usize {
        self.row.bytes()
    }

    /// One row appended to this client's stream, timed.
    pub async fn insert(mut self) -> anyhow::Result<(Self, Duration)> {
        self.sequence += 1;
        let row = &*self.row;
        let started = Instant::now();
        sqlx::query(INSERT)
            .bind(&row.aggregate_type)
            .bind(&self.aggregate_id)
            .bind(self.sequence)
            .bind(&row.event_type)
            .bind(&row.event_version)
            .bind(&row.payload)
            .bind(&row.metadata)
            .bind(&row.sealed)
            .bind(&row.salts)
            .bind(&row.prev_hash)
            .bind(&row.hash)
            .bind(row.hash_version)
            .execute(&mut self.db)
            .await
            .context("INSERT INTO bench_events")?;
        Ok((self, started.elapsed()))
    }
}
