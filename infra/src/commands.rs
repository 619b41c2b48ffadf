//! Runs a command on an aggregate kept by postgres-es and tells the caller
//! what it wrote: the committed events and the global position of the last.
//! This is `CqrsFramework::execute_with_metadata` minus the query dispatch
//! (read models are built by the projector), plus that answer.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;

/// Tries of [`CommandBus::execute_retrying_conflicts`] when concurrent
/// writers keep winning the append.
pub const CONFLICT_ATTEMPTS: usize = 5;

pub struct CommandBus<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    pool: PgPool,
}

/// What one command wrote. `events` is empty when it changed nothing; then
/// `position` is that of the aggregate's last event (or 0 if it has none),
/// so a client can still wait for the read model to show the current state.
#[derive(Debug)]
pub struct Outcome<E> {
    pub events: Vec<E>,
    pub position: i64,
}

impl<A: Aggregate<Services = ()>> CommandBus<A> {
    pub fn new(pool: PgPool) -> Self {
        let store =
            PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
                .with_upcasters(domain::contract::upcasters());
        Self { store, pool }
    }

    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &bus::EventMetadata,
    ) -> Result<Outcome<A::Event>, AggregateError<A::Error>> {
        let mut context = self.store.load_aggregate(aggregate_id).await?;
        let sink = EventSink::default();
        context
            .aggregate()
            .handle(command, &(), &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let committed = self
            .store
            .commit(sink.collect().await, context, metadata.to_map())
            .await?;
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
        })
    }

    /// Runs the command built by `command`, and again at once (reloading
    /// the aggregate, with a fresh command) when a concurrent writer
    /// appended first, up to [`CONFLICT_ATTEMPTS`] tries. Only for commands
    /// whose outcome a rerun decides anew, e.g. revoking a session.
    pub async fn execute_retrying_conflicts(
        &self,
        aggregate_id: &str,
        mut command: impl FnMut() -> A::Command,
        metadata: &bus::EventMetadata,
    ) -> Result<Outcome<A::Event>, AggregateError<A::Error>> {
        let mut attempt = 1;
        loop {
            match self.execute(aggregate_id, command(), metadata).await {
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_ATTEMPTS => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// The aggregate as its events make it now (a default one if it has none).
    pub async fn load(&self, aggregate_id: &str) -> Result<A, AggregateError<A::Error>> {
        let mut context = self.store.load_aggregate(aggregate_id).await?;
        Ok(std::mem::take(context.aggregate()))
    }

    /// The global position of event `sequence` of the aggregate, or of its
    /// last event when `sequence` is `None`.
    async fn position_of(&self, aggregate_id: &str, sequence: Option<i64>) -> sqlx::Result<i64> {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT global_position FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 \
               AND ($3::bigint IS NULL OR sequence = $3) \
             ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(sequence)
        .fetch_optional(&self.pool)
        .await?;
        Ok(position.unwrap_or(0))
    }
}
