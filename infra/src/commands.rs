//! Runs a command on an aggregate kept by postgres-es and tells the caller
//! what it wrote: the committed events and the global position of the last.
//! This is `CqrsFramework::execute_with_metadata` minus the query dispatch
//! (read models are built by the projector), plus that answer.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventStoreAggregateContext, EventUpcaster, PersistedEventStore, SerializedEvent,
};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use domain::{CommandName, Snapshotted};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;

use crate::command_metrics::{self, CommandOutcome};
use crate::snapshots::{Snapshot, Snapshots, SNAPSHOT_AFTER_EVENTS};

/// Tries of [`CommandBus::execute_retrying_conflicts`] when concurrent
/// writers keep winning the append.
pub const CONFLICT_ATTEMPTS: usize = 5;

/// What an aggregate needs from outside to decide, built once per bus.
pub trait StoreServices: Sized {
    fn for_store(pool: &PgPool) -> Self;
}

impl StoreServices for () {
    fn for_store(_pool: &PgPool) {}
}

pub struct CommandBus<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    snapshots: Snapshots,
    services: A::Services,
    pool: PgPool,
}

/// What one command wrote. `events` is empty when it changed nothing; then
/// `position` is that of the aggregate's last event (or 0 if it has none),
/// so a client can still wait for the read model to show the current state.
#[derive(Debug)]
pub struct Outcome<A: Aggregate> {
    pub events: Vec<A::Event>,
    pub position: i64,
    /// Events folded to load the aggregate (those after its snapshot): at
    /// most [`SNAPSHOT_AFTER_EVENTS`] once a snapshot is written.
    pub folded: usize,
    /// The aggregate as the command left it.
    pub state: A,
}

/// An event as [`CommandBus`] reads it to fold an aggregate.
#[derive(sqlx::FromRow)]
struct StoredEvent {
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
}

impl StoredEvent {
    fn serialized(self, aggregate_type: &str, aggregate_id: &str) -> SerializedEvent {
        SerializedEvent::new(
            aggregate_id.to_owned(),
            usize::try_from(self.sequence).unwrap_or(0),
            aggregate_type.to_owned(),
            self.event_type,
            self.event_version,
            self.payload,
            self.metadata,
        )
    }
}

/// An aggregate as loaded for a command, and how many events that folded.
struct Loaded<A: Aggregate> {
    context: EventStoreAggregateContext<A>,
    folded: usize,
}

impl<A> CommandBus<A>
where
    A: Snapshotted,
    A::Services: StoreServices,
    A::Command: CommandName,
{
    pub fn new(pool: PgPool) -> Self {
        let store =
            PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()));
        Self {
            store,
            upcasters: domain::contract::upcasters(),
            snapshots: Snapshots::new(pool.clone()),
            services: A::Services::for_store(&pool),
            pool,
        }
    }

    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &bus::EventMetadata,
    ) -> Result<Outcome<A>, AggregateError<A::Error>> {
        self.execute_with(aggregate_id, command, |_| metadata.clone())
            .await
    }

    /// [`CommandBus::execute`] with metadata that depends on the aggregate
    /// as loaded (e.g. the actor of a refresh is the session's user).
    pub async fn execute_with(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata_of: impl Fn(&A) -> bus::EventMetadata,
    ) -> Result<Outcome<A>, AggregateError<A::Error>> {
        let name = command.name();
        let result = self.run(aggregate_id, command, metadata_of).await;
        command_metrics::record(A::TYPE, name, CommandOutcome::of(&result));
        result
    }

    async fn run(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata_of: impl Fn(&A) -> bus::EventMetadata,
    ) -> Result<Outcome<A>, AggregateError<A::Error>> {
        let Loaded {
            mut context,
            folded,
        } = self.load_context(aggregate_id).await?;
        let sink = EventSink::default();
        context
            .aggregate
            .handle(command, &self.services, &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        let mut state = context.aggregate.clone();
        let committed = self
            .store
            .commit(events, context, metadata_of(&state).to_map())
            .await?;
        for envelope in &committed {
            state.apply(envelope.payload.clone());
        }
        if folded + committed.len() >= SNAPSHOT_AFTER_EVENTS {
            self.snapshot(aggregate_id, &state, &committed).await;
        }
        let last_sequence = committed.last().map(|envelope| envelope.sequence as i64);
        let position = self
            .position_of(aggregate_id, last_sequence)
            .await
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        Ok(Outcome {
            events: committed
                .into_iter()
                .map(|envelope| envelope.payload)
                .collect(),
            position,
            folded,
            state,
        })
    }

    /// Runs the command built by `command`, and again at once (reloading
    /// the aggregate, with a fresh command) when a concurrent writer
    /// appended first, up to [`CONFLICT_ATTEMPTS`] tries. Only for commands
    /// whose outcome a rerun decides anew, e.g. revoking a session.
    pub async fn execute_retrying_conflicts(
        &self,
        aggregate_id: &str,
        command: impl FnMut() -> A::Command,
        metadata: &bus::EventMetadata,
    ) -> Result<Outcome<A>, AggregateError<A::Error>> {
        self.execute_retrying_conflicts_with(aggregate_id, command, |_| metadata.clone())
            .await
    }

    /// [`CommandBus::execute_retrying_conflicts`] with metadata that
    /// depends on the aggregate as loaded.
    pub async fn execute_retrying_conflicts_with(
        &self,
        aggregate_id: &str,
        mut command: impl FnMut() -> A::Command,
        metadata_of: impl Fn(&A) -> bus::EventMetadata,
    ) -> Result<Outcome<A>, AggregateError<A::Error>> {
        let mut attempt = 1;
        loop {
            match self
                .execute_with(aggregate_id, command(), &metadata_of)
                .await
            {
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_ATTEMPTS => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// The aggregate as its events make it now (a default one if it has none).
    pub async fn load(&self, aggregate_id: &str) -> Result<A, AggregateError<A::Error>> {
        Ok(self.load_context(aggregate_id).await?.context.aggregate)
    }

    /// The stream's snapshot, if any, with the events after it folded on top.
    async fn load_context(
        &self,
        aggregate_id: &str,
    ) -> Result<Loaded<A>, AggregateError<A::Error>> {
        let Snapshot {
            mut aggregate,
            last_sequence,
        } = self
            .snapshots
            .load::<A>(aggregate_id)
            .await
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?
            .unwrap_or(Snapshot {
                aggregate: A::default(),
                last_sequence: 0,
            });
        let events = self.events_after(aggregate_id, last_sequence).await?;
        let folded = events.len();
        let mut current_sequence = last_sequence;
        for event in events {
            let envelope = self.deserialize(event)?;
            current_sequence = envelope.sequence;
            aggregate.apply(envelope.payload);
        }
        Ok(Loaded {
            context: EventStoreAggregateContext {
                aggregate_id: aggregate_id.to_owned(),
                aggregate,
                current_sequence,
                current_snapshot: None,
            },
            folded,
        })
    }

    /// The stream's events after `last_sequence`, in order. (postgres-es's
    /// `get_last_events` writes the sequence into the statement's text, so
    /// every call would parse and plan a new statement.)
    async fn events_after(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, AggregateError<A::Error>> {
        let rows: Vec<StoredEvent> = sqlx::query_as(
            "SELECT sequence, event_type, event_version, payload, metadata FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
             ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(i64::try_from(last_sequence).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        Ok(rows
            .into_iter()
            .map(|row| row.serialized(A::TYPE, aggregate_id))
            .collect())
    }

    fn deserialize(
        &self,
        event: SerializedEvent,
    ) -> Result<EventEnvelope<A>, AggregateError<A::Error>> {
        let event = self.upcasters.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        });
        Ok(EventEnvelope::<A>::try_from(event)?)
    }

    /// Stores `state`, which `committed` left, as the stream's snapshot. A
    /// snapshot is a cache: failing to store one costs the next command a
    /// longer fold, never the command that just committed.
    async fn snapshot(&self, aggregate_id: &str, state: &A, committed: &[EventEnvelope<A>]) {
        let Some(last_sequence) = committed.last().map(|envelope| envelope.sequence) else {
            return;
        };
        if let Err(error) = self
            .snapshots
            .save(aggregate_id, state, last_sequence)
            .await
        {
            tracing::warn!(
                aggregate_type = A::TYPE,
                aggregate_id,
                error = &error as &dyn std::error::Error,
                "snapshot not stored"
            );
        }
    }

    /// The global position of event `sequence` of the aggregate, or of its
    /// last event when `sequence` is `None` (the command appended nothing).
    async fn position_of(&self, aggregate_id: &str, sequence: Option<i64>) -> sqlx::Result<i64> {
        // The same statement wakes the relay when events were appended: a
        // NOTIFY after the commit, in a statement that writes nothing, never
        // holds PostgreSQL's notify lock through a commit's WAL flush, as
        // one inside the appending transaction would.
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT (SELECT global_position FROM events \
                     WHERE aggregate_type = $1 AND aggregate_id = $2 \
                       AND ($3::bigint IS NULL OR sequence = $3) \
                     ORDER BY sequence DESC LIMIT 1), \
                    CASE WHEN $3::bigint IS NOT NULL THEN pg_notify($4, '')::text END",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(sequence)
        .bind(crate::event_log::EVENTS_APPENDED_CHANNEL)
        .fetch_one(&self.pool)
        .await?;
        Ok(position.unwrap_or(0))
    }
}
