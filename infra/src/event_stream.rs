//! One stream of the event store as a command sees it: read in one round
//! trip (its snapshot, the events after it and the hash to chain the next
//! event to), and appended to in one statement with every event already
//! sealed and hashed here, so the database's trigger only checks the link.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::integrity::{event_hash, seal_event, ChainedEvent, HashVersion};

/// What [`load`] read of a stream.
#[derive(Debug, Default)]
pub struct StoredStream {
    /// The snapshot's text and the sequence it stands at, if there is one.
    pub snapshot: Option<(usize, String)>,
    /// The events after the snapshot (or all of them), in order.
    pub events: Vec<StoredEvent>,
    /// The hash of the stream's last event; empty for an empty stream.
    pub last_hash: String,
    /// The sequence of the stream's last event; 0 for an empty stream.
    pub last_sequence: usize,
}

/// An event as a command folds it.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredEvent {
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

#[derive(sqlx::FromRow)]
struct Row {
    /// 0: the snapshot (its text in `payload`); 1: an event.
    kind: i32,
    sequence: i64,
    event_type: Option<String>,
    event_version: Option<String>,
    payload: Option<String>,
    metadata: Option<String>,
    hash: Option<String>,
}

/// The stream's snapshot of `schema`, if any, and its events from the
/// snapshot's own event on (that one only for its hash), or from the start
/// when `from_start` (a snapshot that no longer decodes).
pub async fn load(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    schema: i32,
    from_start: bool,
) -> sqlx::Result<StoredStream> {
    let rows: Vec<Row> = sqlx::query_as(
        "WITH snapshot AS (SELECT last_sequence, payload FROM snapshots \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND schema = $3 AND NOT $4) \
         SELECT 0 AS kind, last_sequence AS sequence, NULL AS event_type, \
                NULL AS event_version, payload::text AS payload, NULL AS metadata, NULL AS hash \
         FROM snapshot \
         UNION ALL \
         SELECT 1, sequence, event_type, event_version, payload::text, metadata::text, hash \
         FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 \
           AND sequence >= COALESCE((SELECT last_sequence FROM snapshot), 0) \
         ORDER BY kind, sequence",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(schema)
    .bind(from_start)
    .fetch_all(pool)
    .await?;
    let mut stream = StoredStream::default();
    for row in rows {
        if row.kind == 0 {
            let sequence = usize::try_from(row.sequence).unwrap_or(0);
            stream.snapshot = Some((sequence, row.payload.unwrap_or_default()));
            continue;
        }
        stream.last_sequence = usize::try_from(row.sequence).unwrap_or(0);
        stream.last_hash = row.hash.unwrap_or_default();
        if stream
            .snapshot
            .as_ref()
            .is_some_and(|(snapshot_sequence, _)| *snapshot_sequence == stream.last_sequence)
        {
            continue;
        }
        stream.events.push(StoredEvent {
            sequence: row.sequence,
            event_type: row.event_type.unwrap_or_default(),
            event_version: row.event_version.unwrap_or_default(),
            payload: parse(row.payload)?,
            metadata: parse(row.metadata)?,
        });
    }
    Ok(stream)
}

fn parse(text: Option<String>) -> sqlx::Result<Value> {
    serde_json::from_str(text.as_deref().unwrap_or("null"))
        .map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

/// An event a command decided on, serialized.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
}

/// Where a stream stands before an append.
#[derive(Clone, Debug)]
pub struct StreamHead<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub last_sequence: usize,
    pub last_hash: &'a str,
}

/// The columns of the events one append writes, one vector per column.
#[derive(Default)]
pub struct Columns {
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<String>,
    metadata: Vec<String>,
    event_id: Vec<Uuid>,
    recorded_at: Vec<DateTime<Utc>>,
    sealed: Vec<String>,
    salts: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
}

/// Appends `events` after `head`, each sealed, chained and hashed, in one
/// statement (so all of them or none), and answers their global positions.
/// A concurrent writer that appended first makes it fail with a unique
/// violation on the stream's primary key.
pub async fn append(
    pool: &PgPool,
    head: &StreamHead<'_>,
    events: &[NewEvent],
    metadata: &Value,
) -> sqlx::Result<Vec<i64>> {
    let columns = sealed_columns(head, events, metadata, now_in_microseconds());
    insert(head.aggregate_type, columns).fetch_all(pool).await
}

/// Appends the events of many streams of `aggregate_type`, each after its
/// head, sealed, chained and hashed as [`append`] does, in one statement,
/// in the order `rows` lists them (a stream's events in sequence order).
/// For bulk loads (the tests' and the bench's seeds).
pub async fn append_rows(
    db: &mut sqlx::PgConnection,
    aggregate_type: &str,
    rows: Columns,
) -> sqlx::Result<Vec<i64>> {
    insert(aggregate_type, rows).fetch_all(db).await
}

/// The statement that appends `columns`, answering their global positions.
fn insert(
    aggregate_type: &str,
    columns: Columns,
) -> sqlx::query::QueryScalar<'_, sqlx::Postgres, i64, sqlx::postgres::PgArguments> {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata, event_id, recorded_at, sealed, salts, prev_hash, hash, hash_version) \
         SELECT $1, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::json, \
                e.metadata::json, e.event_id, e.recorded_at, e.sealed::json, e.salts::jsonb, \
                e.prev_hash, e.hash, $2 \
         FROM UNNEST($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], \
                     $9::uuid[], $10::timestamptz[], $11::text[], $12::text[], $13::text[], \
                     $14::text[]) \
              WITH ORDINALITY AS e(aggregate_id, sequence, event_type, event_version, payload, \
                                   metadata, event_id, recorded_at, sealed, salts, prev_hash, \
                                   hash, ord) \
         ORDER BY e.ord \
         RETURNING global_position",
    )
    .bind(aggregate_type)
    .bind(i16::from(HashVersion::CURRENT))
    .bind(columns.aggregate_id)
    .bind(columns.sequence)
    .bind(columns.event_type)
    .bind(columns.event_version)
    .bind(columns.payload)
    .bind(columns.metadata)
    .bind(columns.event_id)
    .bind(columns.recorded_at)
    .bind(columns.sealed)
    .bind(columns.salts)
    .bind(columns.prev_hash)
    .bind(columns.hash)
}

/// The time as PostgreSQL keeps it (whole microseconds), so the hash
/// covers exactly what is stored.
fn now_in_microseconds() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// `events` after `head`, sealed, chained and hashed, recorded at `recorded_at`.
pub fn sealed_columns(
    head: &StreamHead<'_>,
    events: &[NewEvent],
    metadata: &Value,
    recorded_at: DateTime<Utc>,
) -> Columns {
    let mut columns = Columns::default();
    columns.push_sealed(head, events, metadata, recorded_at);
    columns
}

impl Columns {
    /// How many events these columns hold.
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    /// The hash of the last event added ("" when none).
    pub fn last_hash(&self) -> &str {
        self.hash.last().map_or("", String::as_str)
    }

    /// Adds `events` after `head`, sealed, chained and hashed.
    pub fn push_sealed(
        &mut self,
        head: &StreamHead<'_>,
        events: &[NewEvent],
        metadata: &Value,
        recorded_at: DateTime<Utc>,
    ) {
        push_sealed(self, head, events, metadata, recorded_at);
    }
}

fn push_sealed(
    columns: &mut Columns,
    head: &StreamHead<'_>,
    events: &[NewEvent],
    metadata: &Value,
    recorded_at: DateTime<Utc>,
) {
    let metadata_text = metadata.to_string();
    let mut prev_hash = head.last_hash.to_owned();
    for (offset, event) in events.iter().enumerate() {
        let sequence = i64::try_from(head.last_sequence + offset + 1).unwrap_or(i64::MAX);
        let event_id = Uuid::new_v4();
        let sealed = seal_event(&event.payload, metadata);
        let hash = event_hash(&ChainedEvent {
            version: HashVersion::CURRENT,
            prev_hash: &prev_hash,
            event_id: &event_id.hyphenated().to_string(),
            aggregate_type: head.aggregate_type,
            aggregate_id: head.aggregate_id,
            sequence,
            event_type: &event.event_type,
            event_version: &event.event_version,
            sealed: &sealed.sealed,
            recorded_at,
        });
        columns.aggregate_id.push(head.aggregate_id.to_owned());
        columns.sequence.push(sequence);
        columns.event_type.push(event.event_type.clone());
        columns.event_version.push(event.event_version.clone());
        columns.payload.push(event.payload.to_string());
        columns.metadata.push(metadata_text.clone());
        columns.event_id.push(event_id);
        columns.recorded_at.push(recorded_at);
        columns.sealed.push(sealed.sealed);
        columns.salts.push(sealed.salts.to_string());
        columns
            .prev_hash
            .push(std::mem::replace(&mut prev_hash, hash.clone()));
        columns.hash.push(hash);
    }
}

#[cfg(test)]
mod tests {
    use domain::ContractEvent;
    use serde_json::json;

    use super::*;

    const RENAMED: domain::contract::EventType = domain::UserEvent::DISPLAY_NAME_CHANGED;

    fn renamed(name: &str) -> NewEvent {
        NewEvent {
            event_type: RENAMED.name().into(),
            event_version: RENAMED.version().into(),
            payload: json!({"DisplayNameChanged": {"display_name": name}}),
        }
    }

    #[test]
    fn each_event_chains_to_the_one_before_it() {
        let head = StreamHead {
            aggregate_type: domain::UserEvent::AGGREGATE_TYPE,
            aggregate_id: "u1",
            last_sequence: 4,
            last_hash: "abc",
        };
        let columns = sealed_columns(
            &head,
            &[renamed("a"), renamed("b")],
            &json!({"actor_id": "u1"}),
            now_in_microseconds(),
        );
        assert_eq!(columns.sequence, vec![5, 6]);
        assert_eq!(columns.prev_hash[0], "abc");
        assert_eq!(columns.prev_hash[1], columns.hash[0]);
        assert_ne!(columns.hash[0], columns.hash[1]);
    }

    #[test]
    fn the_hash_covers_what_is_stored() {
        let head = StreamHead {
            aggregate_type: domain::UserEvent::AGGREGATE_TYPE,
            aggregate_id: "u1",
            last_sequence: 0,
            last_hash: "",
        };
        let recorded_at = now_in_microseconds();
        let columns = sealed_columns(&head, &[renamed("a")], &json!({}), recorded_at);
        let again = event_hash(&ChainedEvent {
            version: HashVersion::CURRENT,
            prev_hash: "",
            event_id: &columns.event_id[0].to_string(),
            aggregate_type: domain::UserEvent::AGGREGATE_TYPE,
            aggregate_id: "u1",
            sequence: 1,
            event_type: RENAMED.name(),
            event_version: RENAMED.version(),
            sealed: &columns.sealed[0],
            recorded_at,
        });
        assert_eq!(columns.hash[0], again);
        assert_eq!(recorded_at.timestamp_subsec_nanos() % 1_000, 0);
    }
}
