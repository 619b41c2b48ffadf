//! What erasing a person does to what the service stores, once `user.erased`
//! is recorded: the person's email claims are freed, and every personal
//! value (`domain::erasure`) in the event store is replaced by
//! [`domain::ERASED`] with its salt set to null, so the commitment in
//! `sealed` stays and the chain still verifies, but nothing can test a
//! guess against it. Client addresses the person used are forgotten by the
//! login-failure counters too. Metadata is the person's only on events they
//! caused: an administrator's address and agent stay on what the
//! administrator did, `user.erased` included.
//!
//! Appends racing the erasure are handled by the database
//! (`infra::erased`): once `user.erased` commits, a session start for the
//! person is refused and an event the person causes is stored scrubbed; an
//! append that committed first is found here, in the event store.
//!
//! Each step is one transaction of idempotent statements: running it again
//! (a retry, or a second erase) changes nothing done and completes anything
//! left undone. The read models and the worker scrub their own rows when
//! they consume `user.erased`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use bus::metadata_keys::{ACTOR_ID, REQUEST_IP};
use cqrs_es::Aggregate;
use domain::{
    ClaimScope, PayloadField, PersonalMetadata, Session, SessionEvent, User, UserEvent, ERASED,
    PERSONAL_PAYLOAD_FIELDS,
};
use infra::erased::metadata_key;
use sqlx::postgres::PgArguments;
use sqlx::{PgConnection, PgPool, Postgres, Row};

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;
use uuid::Uuid;

use crate::failed_logins::address_key;

/// The streams that hold a person's data: their user and their sessions.
struct Streams {
    user_id: String,
    session_ids: Vec<String>,
}

impl Streams {
    /// The ids of `aggregate_type`'s streams among them.
    fn ids_of(&self, aggregate_type: &str) -> Vec<String> {
        match aggregate_type {
            User::TYPE => vec![self.user_id.clone()],
            Session::TYPE => self.session_ids.clone(),
            _ => Vec::new(),
        }
    }
}

pub struct Erasure {
    pool: PgPool,
}

impl Erasure {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Frees the claims, then scrubs the event store and the sessions
    /// read model; each step is safe to run again.
    pub async fn scrub(&self, user_id: Uuid) -> sqlx::Result<()> {
        self.free_claims(user_id).await?;
        self.scrub_events(user_id).await?;
        self.scrub_sessions_view(user_id).await
    }

    /// The person's rows of `sessions_view` read `[erased]` for their
    /// client's address and agent. The projector does this when it applies
    /// `user.erased` and for every row it writes afterwards
    /// (`infra::erased`); doing it here too lets a second erase repair rows
    /// an older projector left (an absent value stays absent).
    async fn scrub_sessions_view(&self, user_id: Uuid) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE sessions_view \
             SET ip = CASE WHEN ip IS NULL THEN NULL ELSE $2 END, \
                 user_agent = CASE WHEN user_agent IS NULL THEN NULL ELSE $2 END \
             WHERE user_id = $1 \
               AND (ip IS NOT NULL AND ip <> $2 OR user_agent IS NOT NULL AND user_agent <> $2)",
        )
        .bind(user_id)
        .bind(ERASED)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The person's email (and any old form of it) may be registered again.
    async fn free_claims(&self, user_id: Uuid) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM unique_claims WHERE scope = $1 AND owner_id = $2")
            .bind(ClaimScope::USER_EMAIL.as_str())
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One transaction: the client addresses the person's events name are
    /// forgotten by the failure counters (read before they are scrubbed, so
    /// a retry after a failure finds them still), then every personal leaf
    /// of the person's streams and of the events they caused is erased.
    async fn scrub_events(&self, user_id: Uuid) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        let streams = streams_of(&mut tx, user_id).await?;
        forget_addresses(&mut tx, &streams).await?;
        for field in PERSONAL_PAYLOAD_FIELDS {
            erase_payload_field(&mut tx, &streams, *field).await?;
        }
        for metadata in PersonalMetadata::ALL {
            erase_metadata(&mut tx, &streams, metadata_key(*metadata)).await?;
        }
        // Snapshots (infra::snapshots) hold the streams' state.
        sqlx::query(
            "DELETE FROM snapshots WHERE (aggregate_type = $1 AND aggregate_id = $2) \
                OR (aggregate_type = $3 AND aggregate_id = ANY($4))",
        )
        .bind(User::TYPE)
        .bind(&streams.user_id)
        .bind(Session::TYPE)
        .bind(&streams.session_ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

/// The user's stream and every session they started.
async fn streams_of(tx: &mut PgConnection, user_id: Uuid) -> sqlx::Result<Streams> {
    // Constants, not input, are written into the text so that the planner
    // matches the partial index on started sessions' user ids.
    let sql = format!(
        "SELECT aggregate_id FROM events \
         WHERE aggregate_type = '{kind}' AND event_type = '{started}' AND ({user}) = $1",
        kind = Session::TYPE,
        started = SessionEvent::STARTED,
        user = SessionEvent::STARTED_USER_ID.json_text(),
    );
    let session_ids = sqlx::query_scalar(&sql)
        .bind(user_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    Ok(Streams {
        user_id: user_id.to_string(),
        session_ids,
    })
}

/// Deletes the api's failure counts of every address the person's events
/// name, their own failures not yet settled, and blocks of those addresses that
/// have ended. A block in force
/// stays until it ends (minutes): erasure must not lift a block.
async fn forget_addresses(tx: &mut PgConnection, streams: &Streams) -> sqlx::Result<()> {
    let addresses: Vec<String> = addresses_of(tx, streams)
        .await?
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(address_key)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    sqlx::query("DELETE FROM login_address_failures WHERE address = ANY($1)")
        .bind(&addresses)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM login_ip_blocks WHERE ip = ANY($1) AND blocked_until <= now()")
        .bind(&addresses)
        .execute(&mut *tx)
        .await?;
    // The person's failures not yet settled hold an address and user agent.
    sqlx::query("DELETE FROM pending_login_failures WHERE user_id = $1")
        .bind(streams.user_id.parse::<Uuid>().ok())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Every client address in the person's events: the request addresses of
/// the events they caused, and the addresses failed logins and sessions
/// recorded.
async fn addresses_of(tx: &mut PgConnection, streams: &Streams) -> sqlx::Result<Vec<String>> {
    let mut addresses: Vec<String> = Vec::new();
    for field in [UserEvent::LOGIN_FAILED_IP, SessionEvent::STARTED_IP] {
        addresses.extend(
            sqlx::query_scalar::<_, String>(
                "SELECT payload::jsonb #>> $1 FROM events \
                 WHERE aggregate_type = $2 AND aggregate_id = ANY($3) AND event_type = $4 \
                   AND payload::jsonb #>> $1 IS NOT NULL",
            )
            .bind(field.path())
            .bind(field.event_type.aggregate_type())
            .bind(streams.ids_of(field.event_type.aggregate_type()))
            .bind(field.event_type.name())
            .fetch_all(&mut *tx)
            .await?,
        );
    }
    let sql = format!(
        "SELECT DISTINCT metadata ->> $1 FROM events WHERE {} AND metadata ->> $1 <> $2",
        caused_by_person()
    );
    let query = sqlx::query(&sql).bind(REQUEST_IP).bind(ERASED);
    let rows = bind_person(query, streams).fetch_all(&mut *tx).await?;
    for row in rows {
        addresses.push(row.try_get(0)?);
    }
    Ok(addresses)
}

/// Erases `field` wherever it holds a string in the person's streams.
async fn erase_payload_field(
    tx: &mut PgConnection,
    streams: &Streams,
    field: PayloadField,
) -> sqlx::Result<()> {
    let kind = field.event_type.aggregate_type();
    sqlx::query(
        "UPDATE events \
         SET payload = jsonb_set(payload::jsonb, $1, to_jsonb($2::text))::json, \
             salts = jsonb_set(salts, array['payload'] || $1, 'null'::jsonb) \
         WHERE aggregate_type = $3 AND aggregate_id = ANY($4) AND event_type = $5 \
           AND jsonb_typeof(payload::jsonb #> $1) = 'string' \
           AND payload::jsonb #>> $1 <> $2",
    )
    .bind(field.path())
    .bind(ERASED)
    .bind(kind)
    .bind(streams.ids_of(kind))
    .bind(field.event_type.name())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Erases the metadata `key` wherever it holds a string, in every event the
/// person caused ([`caused_by_person`]).
async fn erase_metadata(tx: &mut PgConnection, streams: &Streams, key: &str) -> sqlx::Result<()> {
    let sql = format!(
        "UPDATE events \
         SET metadata = jsonb_set(metadata::jsonb, array[$1], to_jsonb($2::text))::json, \
             salts = jsonb_set(salts, array['metadata', $1], 'null'::jsonb) \
         WHERE jsonb_typeof(metadata::jsonb -> $1) = 'string' AND metadata ->> $1 <> $2 \
           AND {}",
        caused_by_person()
    );
    let query = sqlx::query(&sql).bind(key).bind(ERASED);
    bind_person(query, streams).execute(&mut *tx).await?;
    Ok(())
}

/// The events whose metadata describe the person's requests, on parameters
/// `$3` to `$6` ([`bind_person`]): those the person caused (their actor is
/// the person), and those of the person's streams that no one caused. An
/// event someone else caused in the person's streams (an administrator's
/// registration, erasure or revocation) keeps that actor's own metadata.
/// The arms have indexes (the one on the actor, whose key is a constant
/// written into the text for the planner to match it, and the primary key).
fn caused_by_person() -> String {
    format!(
        "((metadata ->> '{ACTOR_ID}') = $4 \
          OR ((metadata ->> '{ACTOR_ID}') IS NULL \
              AND ((aggregate_type = $3 AND aggregate_id = $4) \
                   OR (aggregate_type = $5 AND aggregate_id = ANY($6)))))"
    )
}

fn bind_person<'q>(query: PgQuery<'q>, streams: &'q Streams) -> PgQuery<'q> {
    query
        .bind(User::TYPE)
        .bind(&streams.user_id)
        .bind(Session::TYPE)
        .bind(&streams.session_ids)
}
