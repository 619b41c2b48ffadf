//! The database's own write rate, the limit of the command rate: clients
//! each on a connection of their own doing single-row INSERTs (autocommit)
//! of a JSON value the size of a stored event's payload and metadata into a
//! scratch table of the bench's database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS bench_scratch (\
     id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
     body json NOT NULL, \
     created_at timestamptz NOT NULL DEFAULT now())";
const INSERT: &str = "INSERT INTO bench_scratch (body) VALUES ($1::json)";

/// One client: its connection and the body it inserts.
pub struct Inserter {
    db: PgConnection,
    body: Arc<str>,
}

/// The scratch table, and `clients` connections that insert the newest
/// event's payload and metadata (as one JSON object).
pub async fn prepare(db_url: &SecretString, clients: usize) -> anyhow::Result<Vec<Inserter>> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    sqlx::query(CREATE)
        .execute(&mut db)
        .await
        .context("create bench_scratch")?;
    let body: String = sqlx::query_scalar(
        "SELECT json_build_object('payload', payload, 'metadata', metadata)::text \
         FROM events ORDER BY global_position DESC LIMIT 1",
    )
    .fetch_one(&mut db)
    .await
    .context("the newest event's payload and metadata")?;
    let body: Arc<str> = body.into();
    let mut inserters = vec![Inserter {
        db,
        body: body.clone(),
    }];
    while inserters.len() < clients {
        let db = PgConnection::connect(db_url.expose_secret()).await?;
        inserters.push(Inserter {
            db,
            body: body.clone(),
        });
    }
    Ok(inserters)
}

impl Inserter {
    pub fn body_bytes(&self) -> usize {
        self.body.len()
    }

    /// One INSERT, timed.
    pub async fn insert(mut self) -> anyhow::Result<(Self, Duration)> {
        let started = Instant::now();
        sqlx::query(INSERT)
            .bind(&*self.body)
            .execute(&mut self.db)
            .await
            .context("INSERT INTO bench_scratch")?;
        Ok((self, started.elapsed()))
    }
}
