//! `projector rebuild`: the tables replayed from the event store (views and
//! audit log) equal the ones the live projector built, indexes and their
//! names included, also when the live projector keeps writing.

use crate::support::fold::{rows, wait_for_fold, Views};
use crate::support::identity::{create_role, identity_traffic, set_permissions};
use crate::support::run;
use crate::support::view::{
    self, checkpoint, index_definitions, index_names, table_oids, table_snapshot,
    wait_for_checkpoint,
};
use crate::support::writer::{TestUser, Writer};
use crate::support::{committed_events, Fixture, Relay, TIMEOUT};
use bus::Envelope;
use chrono::TimeDelta;
use cqrs_es::Aggregate;
use domain::{
    DisplayName, Permission, RefreshTokenHash, Role, Session, SessionCommand, User, UserCommand,
};
use infra::event_log::LogPosition;
use infra::testing::{eventually, InProcess, TestDatabase};
use projector::rebuild::{rebuild, RebuildError};
use projector::views::users::UserRow;
use projector::views::{
    ReadModel, Target, AUDIT_LOG, ROLES_VIEW, SESSIONS_VIEW, USERS_VIEW, USER_ROLES_VIEW,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_reproduces_the_live_table_row_for_row() {
    let (fx, ..) = users_with_history(40, 11).await;
    let events = Relay::default().forward(fx.pool(), &fx.broker).await;
    let live = Live::caught_up(&fx, &events).await;

    let rebuilt = rebuild(fx.pool(), None).await.expect("rebuild");

    assert_eq!(
        rebuilt.read_models,
        [USERS_VIEW, ROLES_VIEW, SESSIONS_VIEW, AUDIT_LOG]
    );
    assert_eq!(rebuilt.events, u64::try_from(events.len()).unwrap());
    assert_eq!(rebuilt.up_to, live.last);
    live.assert_reproduced(fx.pool(), "after a rebuild").await;
    // Twice in a row works as well (the previous rebuild left nothing behind).
    rebuild(fx.pool(), None).await.expect("second rebuild");
    live.assert_reproduced(fx.pool(), "after a second rebuild")
        .await;
}

/// The rebuild writes its tables with `COPY`: text that format escapes,
/// and array elements that read as null or split come out as the live
/// projector's statements wrote them.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_writes_escaped_text_and_times_as_the_live_projector_does() {
    let (fx, writer, users) = users_with_history(2, 1).await;
    let name = r#"Back\slash "quoted" \N {a,b} \."#;
    let rename = UserCommand::ChangeDisplayName {
        display_name: DisplayName::parse(name).expect("a display name"),
    };
    writer.execute(users[0].id, rename).await;
    let session_id = Uuid::now_v7();
    let started_at = infra::testing::now();
    let start = SessionCommand::Start {
        second_factor_used: false,
        session_id,
        user_id: users[1].id,
        refresh_token_hash: RefreshTokenHash::new("f00d".into()),
        started_at,
        expires_at: started_at + TimeDelta::hours(1),
        idle_timeout_seconds: 600,
        ip: Some("\\N".into()),
        user_agent: Some("Probe\t1\\2\n3\r4\\.".into()),
    };
    writer.execute_session(session_id, start).await;
    let role = create_role(&writer, "escaped", 0).await;
    set_permissions(
        &writer,
        role,
        &[Permission::AuditRead, Permission::UsersRead],
    )
    .await;
    let events = Relay::default().forward(fx.pool(), &fx.broker).await;
    let live = Live::caught_up(&fx, &events).await;

    rebuild(fx.pool(), None).await.expect("rebuild");
    live.assert_reproduced(fx.pool(), "after a rebuild").await;
    let names: Vec<String> = sqlx::query_scalar("SELECT display_name FROM users_view")
        .fetch_all(fx.pool())
        .await
        .unwrap();
    assert!(names.iter().any(|stored| stored == name), "{names:?}");
}

/// A fixture with `count` users, each `position % cycle` commands past its
/// registration.
async fn users_with_history(count: usize, cycle: usize) -> (Fixture, Writer, Vec<TestUser>) {
    let fx = Fixture::new(|_| {}).await;
    let writer = Writer::new(fx.pool());
    let mut users = writer.register(count).await;
    writer
        .advance(&mut users, |position| position % cycle)
        .await;
    (fx, writer, users)
}

/// The live projector caught up with the events, and its tables then.
struct Live {
    _projector: InProcess,
    last: LogPosition,
    snapshot: Vec<(&'static str, Vec<serde_json::Value>)>,
    indexes: Vec<String>,
}

impl Live {
    /// Starts the projector and waits until it has applied `events` (all
    /// the event store holds, published).
    async fn caught_up(fx: &Fixture, events: &[Envelope]) -> Self {
        let projector = run::start_in_process(fx.settings.clone()).await;
        wait_for_fold(fx.pool()).await;
        let last = LogPosition::of(events.last().expect("events"));
        wait_for_checkpoint(fx.pool(), last).await;
        Self {
            _projector: projector,
            last,
            snapshot: table_snapshot(fx.pool()).await,
            indexes: index_definitions(fx.pool()).await,
        }
    }

    /// The tables hold the same rows, every column, with the same indexes,
    /// and the checkpoint has not moved.
    async fn assert_reproduced(&self, pool: &PgPool, when: &str) {
        assert_eq!(table_snapshot(pool).await, self.snapshot, "{when}");
        assert_eq!(index_definitions(pool).await, self.indexes, "{when}");
        assert_eq!(checkpoint(pool).await, self.last, "{when}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_of_each_view_or_of_all_reproduces_the_live_tables() {
    let (fx, writer, users) = users_with_history(6, 3).await;
    identity_traffic(&writer, &users, "rebuild").await;
    let mut relay = Relay::default();
    let events = relay.forward(fx.pool(), &fx.broker).await;
    let live = Live::caught_up(&fx, &events).await;
    // The events of one aggregate type, or all.
    let count = |aggregate_type: Option<&str>| {
        let count = events
            .iter()
            .filter(|event| aggregate_type.is_none_or(|kind| event.aggregate_type == kind))
            .count();
        u64::try_from(count).unwrap()
    };

    for (name, model, aggregate_type) in [
        (USERS_VIEW, USERS_VIEW, Some(User::TYPE)),
        (USER_ROLES_VIEW, USERS_VIEW, Some(User::TYPE)),
        (ROLES_VIEW, ROLES_VIEW, Some(Role::TYPE)),
        (SESSIONS_VIEW, SESSIONS_VIEW, Some(Session::TYPE)),
        (AUDIT_LOG, AUDIT_LOG, None),
    ] {
        let before = table_oids(fx.pool()).await;
        let rebuilt = rebuild(fx.pool(), Some(name)).await.expect("rebuild");
        assert_eq!(rebuilt.read_models, [model]);
        assert_eq!(rebuilt.events, count(aggregate_type), "{name}");
        live.assert_reproduced(fx.pool(), &format!("after rebuilding {name}"))
            .await;
        assert_only_swapped(&before, &table_oids(fx.pool()).await, model);
    }
    let rebuilt = rebuild(fx.pool(), None).await.expect("rebuild all");
    assert_eq!(rebuilt.events, u64::try_from(events.len()).unwrap());
    live.assert_reproduced(fx.pool(), "after rebuilding all")
        .await;

    // The live projector goes on with the swapped-in tables.
    identity_traffic(&writer, &users, "after").await;
    relay.forward(fx.pool(), &fx.broker).await;
    wait_for_fold(fx.pool()).await;
    fx.broker.assert_delivered_and_none_dead().await;
}

/// Exactly the tables of `model` were swapped for new ones: a rebuild of one
/// read model leaves the others untouched.
fn assert_only_swapped(before: &[(&str, i64)], after: &[(&str, i64)], model: &str) {
    let model = ReadModel::parse(model).expect("a read model");
    let swapped: Vec<&str> = before
        .iter()
        .zip(after)
        .filter(|(old, new)| old != new)
        .map(|((table, _), _)| *table)
        .collect();
    assert_eq!(swapped, model.tables(), "rebuilding {}", model.name());
}

/// The checkpoint covers every read model: a rebuild of one must not move
/// it past events another has not applied (or recorded) yet.
#[tokio::test(flavor = "multi_thread")]
async fn rebuilding_one_read_model_never_moves_the_checkpoint_past_the_others() {
    let fx = Fixture::new(|_| {}).await;
    let writer = Writer::new(fx.pool());
    create_role(&writer, "first", 0).await;
    let users = writer.register(3).await;
    identity_traffic(&writer, &users, "partial").await;
    let events = committed_events(fx.pool()).await;
    assert_eq!(events[0].aggregate_type, Role::TYPE);
    assert_eq!(events[1].aggregate_type, User::TYPE);

    // No projector runs: only the rebuild writes. The role's event is
    // applied, but not yet in the audit log.
    rebuild(fx.pool(), Some(ROLES_VIEW)).await.expect("rebuild");
    let expected = Views::expected(fx.pool()).await;
    let rebuilt = Views::read(fx.pool()).await;
    assert_eq!(rebuilt.roles, expected.roles);
    assert!(rebuilt.audit_log.is_empty());
    assert_eq!(checkpoint(fx.pool()).await, LogPosition::default());

    // The audit log alone: up to the first user event, not in users_view.
    rebuild(fx.pool(), Some(AUDIT_LOG)).await.expect("rebuild");
    let rebuilt = Views::read(fx.pool()).await;
    assert_eq!(rebuilt.audit_log, expected.audit_log);
    assert_eq!(view::view_count(fx.pool()).await, 0);
    assert_eq!(checkpoint(fx.pool()).await, LogPosition::of(&events[0]));

    rebuild(fx.pool(), None).await.expect("rebuild all");
    assert_eq!(
        Views::read(fx.pool()).await,
        Views::expected(fx.pool()).await
    );
    let last = LogPosition::of(events.last().unwrap());
    assert_eq!(checkpoint(fx.pool()).await, last);
}

/// `application_name` of the connections of the rebuild under test.
const REBUILD_APP: &str = "rebuild-under-test";

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_while_the_live_projector_applies_new_events_loses_none() {
    let fx = Fixture::new(|settings| settings.max_batch = 16).await;
    let writer = Writer::new(fx.pool());
    let mut relay = Relay::default();
    let mut users = writer.register(30).await;
    writer.advance(&mut users, |position| position % 5).await;
    relay.forward(fx.pool(), &fx.broker).await;
    let _projector = run::start_in_process(fx.settings.clone()).await;
    wait_for_fold(fx.pool()).await;

    // A backlog the live projector works through while the rebuild replays.
    let mut newcomers = writer.register(100).await;
    writer
        .advance(&mut newcomers, |position| position % 3)
        .await;
    relay.forward(fx.pool(), &fx.broker).await;

    // The rebuild gets a pool of two connections and the test holds one:
    // after its replay the rebuild waits for a second one, before it locks
    // the live table to catch up and swap.
    let options: PgConnectOptions = fx.db.url.parse().expect("database url");
    let rebuild_pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.application_name(REBUILD_APP))
        .await
        .expect("rebuild pool");
    let gate = rebuild_pool.acquire().await.expect("gate connection");
    let rebuilding = tokio::spawn(async move { rebuild(&rebuild_pool, None).await });
    wait_for_replay_to_finish(fx.pool()).await;

    // Events the live projector applies to the old table meanwhile: only the
    // catch-up under the lock can bring them to the new one.
    let mut meanwhile = writer.register(10).await;
    writer
        .advance(&mut meanwhile, |position| position % 3)
        .await;
    writer.advance(&mut users, |position| position % 2).await;
    relay.forward(fx.pool(), &fx.broker).await;
    wait_for_fold(fx.pool()).await;
    // And some the live projector is applying while the rebuild swaps.
    writer
        .advance(&mut newcomers, |position| position % 2)
        .await;
    relay.forward(fx.pool(), &fx.broker).await;
    drop(gate);
    let rebuilt = rebuilding.await.expect("rebuild task").expect("rebuild");

    assert_eq!(
        Views::read(fx.pool()).await,
        Views::expected(fx.pool()).await,
        "the swapped-in table misses events"
    );
    assert_eq!(rebuilt.up_to, relay.position);

    // More traffic after it, for the live projector on the new table.
    for round in 0..3 {
        let mut late = writer.register(5).await;
        writer.advance(&mut late, |_| round).await;
        writer
            .advance(&mut users, |position| (position + round) % 2)
            .await;
        relay.forward(fx.pool(), &fx.broker).await;
        users.extend(late);
    }
    users.extend(newcomers);
    users.extend(meanwhile);

    let rows = wait_for_fold(fx.pool()).await.users;
    assert_eq!(rows.len(), users.len());
    wait_for_checkpoint(fx.pool(), relay.position).await;
    fx.broker.assert_delivered_and_none_dead().await;
}

/// Waits until the rebuild has replayed everything into its new table and
/// read the log once more without finding anything: its last statement.
async fn wait_for_replay_to_finish(pool: &PgPool) {
    let expected = Views::expected(pool).await.users;
    let next = Target::Rebuild.table(USERS_VIEW);
    eventually(TIMEOUT, "the rebuild to finish its replay", || async {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&next)
            .fetch_one(pool)
            .await
            .unwrap();
        if !exists || rows::<UserRow>(pool, &next).await != expected {
            return None;
        }
        let read_last: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
               WHERE datname = current_database() AND application_name = $1 \
                 AND state = 'idle' AND query LIKE 'SELECT event_id%')",
        )
        .bind(REBUILD_APP)
        .fetch_one(pool)
        .await
        .unwrap();
        read_last.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_of_an_unknown_read_model_is_refused() {
    let db = TestDatabase::create().await;
    let result = rebuild(&db.pool, Some("nope")).await;
    assert!(
        matches!(&result, Err(RebuildError::UnknownReadModel(name)) if name == "nope"),
        "{result:?}"
    );
    let next_tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables \
         WHERE schemaname = current_schema() AND tablename = ANY($1)",
    )
    .bind(
        view::read_model_tables()
            .iter()
            .map(|table| Target::Rebuild.table(table))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(next_tables, Vec::<String>::new(), "nothing was created");
}

/// `LIKE ... INCLUDING ALL` names the copied indexes after the new table and
/// their columns; the audit log's migration names them otherwise (and one
/// automatic name would be truncated). A later migration may drop one by
/// name, so a rebuild must give back the names the live indexes had.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_keeps_the_names_of_the_live_indexes() {
    let db = TestDatabase::create().await;
    // Indexes alike but for uniqueness or a predicate pair by definition.
    for index in [
        "UNIQUE INDEX audit_log_by_event_idx ON audit_log (event_id)",
        "INDEX audit_log_by_event_plain_idx ON audit_log (event_id)",
        "INDEX audit_log_by_event_partial_idx ON audit_log (event_id) WHERE sequence = 1",
    ] {
        sqlx::query(&format!("CREATE {index}"))
            .execute(&db.pool)
            .await
            .expect("create an index");
    }
    let names = |table| index_names(&db.pool, table);
    let (audit_log, users_view) = (names(AUDIT_LOG).await, names(USERS_VIEW).await);
    assert!(audit_log.contains(&"audit_log_aggregate_idx".to_owned()));
    let definitions = index_definitions(&db.pool).await;

    rebuild(&db.pool, None).await.expect("rebuild");
    assert_eq!(names(AUDIT_LOG).await, audit_log);
    assert_eq!(names(USERS_VIEW).await, users_view);
    rebuild(&db.pool, Some(AUDIT_LOG)).await.expect("rebuild");
    assert_eq!(names(AUDIT_LOG).await, audit_log);
    assert_eq!(index_definitions(&db.pool).await, definitions);
}
