//! Runs a command on an aggregate kept by postgres-es and tells the caller
//! what it wrote: the committed events and the global position of the last.
//! This is `CqrsFramework::execute_with_metadata` minus the query dispatch
//! (read models are built by the projector), plus that answer.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventEnvelope};
use domain::{CommandName, Snapshotted};
use sqlx::PgPool;

use crate::command_metrics::{self, CommandOutcome};
use crate::event_stream::{self, NewEvent, StoredEvent, StreamHead};
use crate::snapshots::{Snapshots, SNAPSHOT_AFTER_EVENTS};

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

fn serialized(event: StoredEvent, aggregate_type: &str, aggregate_id: &str) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.to_owned(),
        usize::try_from(event.sequence).unwrap_or(0),
        aggregate_type.to_owned(),
        event.event_type,
        event.event_version,
        event.payload,
        event.metadata,
    )
}

/// An aggregate as loaded for a command, and how many events that folded.
struct Loaded<A: Aggregate> {
    aggregate: A,
    /// The sequence and hash of the stream's last event (0 and empty when
    /// it has none): where the command's events are appended and chained.
    last_sequence: usize,
    last_hash: String,
    folded: usize,
}

impl<A> CommandBus<A>
where
    A: Snapshotted,
    A::Services: StoreServices,
    A::Command: CommandName,
{
    pub fn new(pool: PgPool) -> Self {
        Self {
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
            mut aggregate,
            last_sequence,
            last_hash,
            folded,
        } = self.load_context(aggregate_id).await?;
        let sink = EventSink::default();
        aggregate
            .handle(command, &self.services, &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        let mut state = aggregate;
        if events.is_empty() {
            let position = self.last_position(aggregate_id).await.map_err(unexpected)?;
            return Ok(Outcome {
                events,
                position,
                folded,
                state,
            });
        }
        let head = StreamHead {
            aggregate_type: A::TYPE,
            aggregate_id,
            last_sequence,
            last_hash: &last_hash,
        };
        let metadata = serde_json::to_value(metadata_of(&state).to_map())
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        let positions = event_stream::append(&self.pool, &head, &serialize(&events)?, &metadata)
            .await
            .map_err(append_error)?;
        self.announce_appended().await;
        for event in &events {
            state.apply(event.clone());
        }
        if folded + events.len() >= SNAPSHOT_AFTER_EVENTS {
            self.snapshot(aggregate_id, &state, last_sequence + events.len())
                .await;
        }
        Ok(Outcome {
            events,
            position: positions.into_iter().max().unwrap_or(0),
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
        Ok(self.load_context(aggregate_id).await?.aggregate)
    }

    /// The stream's snapshot, if any, with the events after it folded on
    /// top, read in one round trip; read again from the start in the rare
    /// case the snapshot no longer decodes.
    async fn load_context(
        &self,
        aggregate_id: &str,
    ) -> Result<Loaded<A>, AggregateError<A::Error>> {
        let stream = self.read_stream(aggregate_id, false).await?;
        let (mut aggregate, stream) = match &stream.snapshot {
            None => (A::default(), stream),
            Some((_, text)) => match self.snapshots.decode::<A>(aggregate_id, text) {
                Some(aggregate) => (aggregate, stream),
                None => (A::default(), self.read_stream(aggregate_id, true).await?),
            },
        };
        let folded = stream.events.len();
        for event in stream.events {
            let envelope = self.deserialize(serialized(event, A::TYPE, aggregate_id))?;
            aggregate.apply(envelope.payload);
        }
        Ok(Loaded {
            aggregate,
            last_sequence: stream.last_sequence,
            last_hash: stream.last_hash,
            folded,
        })
    }

    async fn read_stream(
        &self,
        aggregate_id: &str,
        from_start: bool,
    ) -> Result<event_stream::StoredStream, AggregateError<A::Error>> {
        event_stream::load(
            &self.pool,
            A::TYPE,
            aggregate_id,
            A::SNAPSHOT_SCHEMA,
            from_start,
        )
        .await
        .map_err(unexpected)
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

    /// Stores `state` as the stream's snapshot after event `last_sequence`.
    /// A snapshot is a cache: failing to store one costs the next command
    /// a longer fold, never the command that just committed.
    async fn snapshot(&self, aggregate_id: &str, state: &A, last_sequence: usize) {
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

    /// Wakes the relay after a commit. In a statement that writes nothing,
    /// never holding PostgreSQL's notify lock through a commit's WAL
    /// flush, as a NOTIFY inside the appending transaction would. A lost
    /// wake-up costs the relay's poll interval, never an event.
    async fn announce_appended(&self) {
        if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(crate::event_log::EVENTS_APPENDED_CHANNEL)
            .execute(&self.pool)
            .await
        {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "the relay was not woken; it finds the events at its next poll"
            );
        }
    }

    /// The global position of the stream's last event (0 if it has none).
    async fn last_position(&self, aggregate_id: &str) -> sqlx::Result<i64> {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT global_position FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 \
             ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(position.unwrap_or(0))
    }
}

fn serialize<E: DomainEvent, X: std::error::Error>(
    events: &[E],
) -> Result<Vec<NewEvent>, AggregateError<X>> {
    events
        .iter()
        .map(|event| {
            Ok(NewEvent {
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_value(event)
                    .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?,
            })
        })
        .collect()
}

fn unexpected<X: std::error::Error>(error: sqlx::Error) -> AggregateError<X> {
    AggregateError::UnexpectedError(Box::new(error))
}

/// As postgres-es maps a failed append: a unique violation means another
/// writer appended first (or a claim was taken: the caller decides again).
fn append_error<X: std::error::Error>(error: sqlx::Error) -> AggregateError<X> {
    let unique_violation = error
        .as_database_error()
        .and_then(|database| database.code())
        .is_some_and(|code| code == "23505");
    match error {
        _ if unique_violation => AggregateError::AggregateConflict,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            AggregateError::DatabaseConnectionError(Box::new(error))
        }
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}
