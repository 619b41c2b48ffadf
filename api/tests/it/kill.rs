//! Two `api`, two `projector` and two `worker` processes (the real binaries)
//! on one database and one broker topology, under a load of registrations,
//! renames, logins and failed logins that lock users; part-way through one
//! of each is SIGKILLed. Once everything has settled: every event is applied
//! once (the read models equal the event store), every event a webhook
//! subscribed to reached its receiver at least once, no lock and no expiry
//! was written twice, and every request answered 2xx is in the event store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::{SessionEvent, UserEvent};
use infra::testing::{
    amqp_url, free_port, wait_until_ready, ChildProcess, TestDatabase, TestTopology,
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::user_events_webhook::{register_user_events_webhook, start_receiver};
use crate::support::{
    bootstrap_admin, login_with_permissions, projector_group, settled, start_api_with,
    worker_group, ApiProcess, ADMIN_EMAIL, GOOD_PASSWORD,
};

const CLIENTS: usize = 4;
const LOAD: Duration = Duration::from_secs(10);
const KILL_AFTER: Duration = Duration::from_secs(4);
// Generous: CI runs this beside every other test on two cores.
const SETTLE: Duration = Duration::from_secs(120);
/// Failed logins that lock a user (the worker's `LOCKOUT_THRESHOLD`).
const THRESHOLD: usize = 3;
/// Sessions end during the test, so the workers race to expire them.
const SESSION_LIFETIME_SECONDS: &str = "4";
const WRONG_PASSWORD: &str = "not the password at all";

/// A debug binary of the workspace beside the api's (built with it by
/// `cargo build` / `cargo test` of the workspace).
fn sibling_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_api")).with_file_name(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build -p {name}` first",
        path.display()
    );
    path
}

fn log_file(name: &str, db: &TestDatabase) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kill-{name}-{}.log", db.name))
}

fn common_env(db: &TestDatabase, topology: &TestTopology) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("DATABASE_MAX_CONNECTIONS", "4".into()),
        ("AMQP_URL", amqp_url()),
        ("AMQP_EXCHANGE", topology.topology.exchange.clone()),
        ("AMQP_QUEUE_PREFIX", topology.topology.queue_prefix.clone()),
        ("MIGRATE_ON_START", "false".into()),
        ("LOG_FORMAT", "json".into()),
    ]
}

/// A projector binary; ready (its queue declared) when this returns.
async fn start_projector(
    name: &'static str,
    db: &TestDatabase,
    topology: &TestTopology,
) -> ChildProcess {
    let port = free_port();
    let mut env = common_env(db, topology);
    env.extend([
        ("PROJECTOR_ADDR", format!("127.0.0.1:{port}")),
        ("PROJECTOR_DELIVERY_LIMIT", "10".into()),
        ("PROJECTOR_PREFETCH", "64".into()),
        ("PROJECTOR_MAX_BATCH", "32".into()),
        ("PROJECTOR_RETRY_BASE_MS", "20".into()),
    ]);
    let binary = sibling_binary("projector");
    let process = ChildProcess::spawn(name, binary.to_str().unwrap(), &env, log_file(name, db));
    wait_until_ready(port).await;
    process
}

/// A worker binary; ready (its queues declared) when this returns.
async fn start_worker(
    name: &'static str,
    db: &TestDatabase,
    topology: &TestTopology,
) -> ChildProcess {
    let port = free_port();
    let mut env = common_env(db, topology);
    env.extend([
        ("WORKER_ADDR", format!("127.0.0.1:{port}")),
        ("LOCKOUT_THRESHOLD", THRESHOLD.to_string()),
        ("LOCKOUT_WINDOW_SECONDS", "600".into()),
        ("LOCKOUT_DURATION_SECONDS", "600".into()),
        ("SESSION_EXPIRY_INTERVAL_MS", "100".into()),
        ("SESSION_EXPIRY_BATCH", "500".into()),
        ("WORKER_DELIVERY_LIMIT", "10".into()),
        ("WORKER_PREFETCH", "64".into()),
        ("WORKER_MAX_BATCH", "32".into()),
        ("WORKER_RETRY_BASE_MS", "20".into()),
        ("WEBHOOKS_ALLOW_HTTP", "true".into()),
        ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true".into()),
        ("WEBHOOK_TIMEOUT_MS", "1000".into()),
        ("WEBHOOK_MAX_ATTEMPTS", "10".into()),
        ("WEBHOOK_RETRY_BASE_MS", "50".into()),
        ("WEBHOOK_MAX_IN_FLIGHT", "4".into()),
        ("WEBHOOK_POLL_INTERVAL_MS", "50".into()),
    ]);
    let binary = sibling_binary("worker");
    let process = ChildProcess::spawn(name, binary.to_str().unwrap(), &env, log_file(name, db));
    wait_until_ready(port).await;
    process
}

async fn start_api(db: &TestDatabase, topology: &TestTopology, name: &str) -> ApiProcess {
    let env = [
        ("RELAY_POLL_INTERVAL_MS", "100"),
        ("DATABASE_MAX_CONNECTIONS", "5"),
        ("AUTH_RATE_PER_SECOND", "100000"),
        ("AUTH_RATE_BURST", "100000"),
        ("LOCKOUT_IP_THRESHOLD", "1000000"),
        ("SESSION_LIFETIME_SECONDS", SESSION_LIFETIME_SECONDS),
        ("WEBHOOKS_ALLOW_HTTP", "true"),
        ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true"),
    ];
    start_api_with(db, topology, &env, Some(&log_file(name, db))).await
}

/// What the api answered 2xx to, per client.
#[derive(Default)]
struct Accepted {
    registered: Vec<Uuid>,
    /// `(user, position)` of each accepted rename.
    renamed: Vec<(Uuid, i64)>,
    sessions: Vec<Uuid>,
    /// Users given `THRESHOLD` wrong passwords, with the 401s answered.
    targets: Vec<(Uuid, usize)>,
    requests: usize,
    unanswered: usize,
}

/// Sends to `addresses[*current]`; on no answer (a killed process) moves
/// to the next address and gives up this request.
async fn send(
    client: &reqwest::Client,
    addresses: &[String],
    current: &mut usize,
    accepted: &mut Accepted,
    build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Option<(u16, Value)> {
    accepted.requests += 1;
    match build(client, &addresses[*current]).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(Value::Null);
            Some((status, body))
        }
        Err(_) => {
            accepted.unanswered += 1;
            *current = (*current + 1) % addresses.len();
            None
        }
    }
}

fn uuid_of(body: &Value, field: &str) -> Uuid {
    Uuid::parse_str(body[field].as_str().expect(field)).expect("a uuid")
}

async fn client_load(index: usize, addresses: Vec<String>, stop: Arc<AtomicBool>) -> Accepted {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut current = index % addresses.len();
    let mut accepted = Accepted::default();
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let email = format!("{}@example.com", Uuid::new_v4());
        let target = round % 3 == 0;
        let register = json!({"email": email, "password": GOOD_PASSWORD, "display_name": "New"});
        let Some((status, body)) =
            send(&client, &addresses, &mut current, &mut accepted, |c, a| {
                c.post(format!("{a}/v1/users")).json(&register)
            })
            .await
        else {
            continue;
        };
        assert_eq!(status, 201, "register: {body}");
        let user_id = uuid_of(&body, "id");
        accepted.registered.push(user_id);
        if target {
            let mut refused = 0;
            let wrong = json!({"email": email, "password": WRONG_PASSWORD});
            for _ in 0..THRESHOLD {
                if let Some((status, body)) =
                    send(&client, &addresses, &mut current, &mut accepted, |c, a| {
                        c.post(format!("{a}/v1/auth/login")).json(&wrong)
                    })
                    .await
                {
                    assert_eq!(status, 401, "wrong password: {body}");
                    refused += 1;
                }
            }
            accepted.targets.push((user_id, refused));
            continue;
        }
        let login = json!({"email": email, "password": GOOD_PASSWORD});
        let Some((status, body)) =
            send(&client, &addresses, &mut current, &mut accepted, |c, a| {
                c.post(format!("{a}/v1/auth/login")).json(&login)
            })
            .await
        else {
            continue;
        };
        assert_eq!(status, 200, "login: {body}");
        accepted.sessions.push(uuid_of(&body, "session_id"));
        let token = body["access_token"].as_str().expect("token").to_owned();
        for rename in 1..=2 {
            let patch = json!({"display_name": format!("Renamed {rename}")});
            let Some((status, body)) =
                send(&client, &addresses, &mut current, &mut accepted, |c, a| {
                    c.patch(format!("{a}/v1/users/{user_id}"))
                        .bearer_auth(&token)
                        .json(&patch)
                })
                .await
            else {
                break;
            };
            assert_eq!(status, 200, "rename: {body}");
            let position = body["position"].as_i64().expect("position");
            accepted.renamed.push((user_id, position));
        }
    }
    accepted
}

struct EventRow {
    position: i64,
    event_id: Uuid,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    payload: Value,
    causation: Option<String>,
}

/// An event as `all_events` reads it, in `EventRow`'s field order.
type Columns = (i64, Uuid, String, String, String, Value, Option<String>);

async fn all_events(db: &TestDatabase) -> Vec<EventRow> {
    let rows: Vec<Columns> = sqlx::query_as(
        "SELECT global_position, event_id, aggregate_type, aggregate_id, event_type, \
                payload::jsonb, metadata::jsonb ->> 'causation_id' \
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(&db.pool)
    .await
    .expect("read the events");
    rows.into_iter()
        .map(
            |(position, event_id, aggregate_type, aggregate_id, event_type, payload, causation)| {
                EventRow {
                    position,
                    event_id,
                    aggregate_type,
                    aggregate_id,
                    event_type,
                    payload,
                    causation,
                }
            },
        )
        .collect()
}

fn field<'a>(payload: &'a Value, path: [&str; 2]) -> &'a str {
    payload[path[0]][path[1]].as_str().expect("a text field")
}

/// What is still missing before everything has settled (empty when done).
async fn unsettled(
    db: &TestDatabase,
    webhook_from: (i64, i64),
    received: &Mutex<Vec<String>>,
) -> Vec<String> {
    let mut missing = Vec::new();
    let open_sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events s WHERE s.event_type = $1 AND NOT EXISTS \
           (SELECT 1 FROM events e WHERE e.aggregate_type = s.aggregate_type \
              AND e.aggregate_id = s.aggregate_id AND e.event_type IN ($2, $3))",
    )
    .bind(SessionEvent::STARTED.name())
    .bind(SessionEvent::EXPIRED.name())
    .bind(SessionEvent::REVOKED.name())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    if open_sessions > 0 {
        missing.push(format!("{open_sessions} sessions not ended"));
    }
    let unlocked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT aggregate_id FROM events WHERE event_type = $1 \
           GROUP BY aggregate_id HAVING count(*) >= $2) f WHERE NOT EXISTS \
           (SELECT 1 FROM events l WHERE l.event_type = $3 AND l.aggregate_id = f.aggregate_id)",
    )
    .bind(UserEvent::LOGIN_FAILED.name())
    .bind(THRESHOLD as i64)
    .bind(UserEvent::LOCKED.name())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    if unlocked > 0 {
        missing.push(format!(
            "{unlocked} users with {THRESHOLD} failures not locked"
        ));
    }
    let expected = subscribed_events(db, webhook_from).await;
    let seen: BTreeSet<String> = received.lock().unwrap().iter().cloned().collect();
    let undelivered = expected
        .iter()
        .filter(|id| !seen.contains(&id.to_string()))
        .count();
    if undelivered > 0 {
        missing.push(format!("{undelivered} webhook events not delivered"));
    }
    // Last: an event the worker appends while the checks above run (a
    // session's expiry) must be projected too before the test compares.
    let last: (i64, i64) = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let checkpoint: (i64, i64) = sqlx::query_as(
        "SELECT transaction_id, global_position FROM projection_checkpoints \
         WHERE projection = 'read_models'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    if checkpoint != last {
        missing.push(format!(
            "projection checkpoint {checkpoint:?}, last event {last:?}"
        ));
    }
    missing
}

/// Ids of the user events the webhook subscribed to: after its
/// registration in publishing order.
async fn subscribed_events(db: &TestDatabase, from: (i64, i64)) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT event_id FROM events WHERE aggregate_type = $1 \
           AND (transaction_id::text::bigint, global_position) > ($2, $3)",
    )
    .bind(UserEvent::REGISTERED.aggregate_type())
    .bind(from.0)
    .bind(from.1)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_one_of_each_process_under_load_loses_and_doubles_nothing() {
    let started = Instant::now();
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![
        projector_group(),
        worker_group(),
        worker::settings::webhook_consumer_group(10),
    ]);
    // Consumers first: their queues exist before the relays publish.
    let mut projector_a = start_projector("projector-a", &db, &topology).await;
    let mut projector_b = start_projector("projector-b", &db, &topology).await;
    let mut worker_a = start_worker("worker-a", &db, &topology).await;
    let mut worker_b = start_worker("worker-b", &db, &topology).await;
    bootstrap_admin(&db).await;
    let mut api_a = start_api(&db, &topology, "api-a").await;
    let mut api_b = start_api(&db, &topology, "api-b").await;
    let addresses = vec![api_a.address.clone(), api_b.address.clone()];

    let (receiver_url, received) = start_receiver().await;
    let client = reqwest::Client::new();
    let admin_token =
        login_with_permissions(&client, &api_b.address, ADMIN_EMAIL, GOOD_PASSWORD).await;
    let (_, webhook_from) =
        register_user_events_webhook(&client, &api_b.address, &admin_token, &receiver_url, &db)
            .await;
    eprintln!("kill: all six processes up after {:?}", started.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..CLIENTS)
        .map(|index| tokio::spawn(client_load(index, addresses.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(KILL_AFTER).await;
    api_a.child.kill().expect("SIGKILL api-a");
    api_a.child.wait().expect("reap api-a");
    projector_a.kill();
    worker_a.kill();
    eprintln!(
        "kill: api-a, projector-a, worker-a SIGKILLed at {:?}",
        started.elapsed()
    );
    tokio::time::sleep(LOAD - KILL_AFTER).await;
    stop.store(true, Ordering::SeqCst);
    let mut accepted = Accepted::default();
    for client in load {
        let done = client.await.expect("a client");
        accepted.registered.extend(done.registered);
        accepted.renamed.extend(done.renamed);
        accepted.sessions.extend(done.sessions);
        accepted.targets.extend(done.targets);
        accepted.requests += done.requests;
        accepted.unanswered += done.unanswered;
    }
    let load_ended = Instant::now();

    // Settling: the survivors catch up, sessions run out, locks are written.
    settled(&db.pool).await;
    let mut missing;
    loop {
        missing = unsettled(&db, webhook_from, &received).await;
        if missing.is_empty() || load_ended.elapsed() > SETTLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        missing.is_empty(),
        "not settled after {SETTLE:?}: {missing:?}"
    );
    assert!(
        api_b.child.try_wait().unwrap().is_none(),
        "api-b still runs"
    );
    assert!(projector_b.is_running() && worker_b.is_running());
    let settled_after = load_ended.elapsed();

    let events = all_events(&db).await;
    let by_id: HashMap<Uuid, &EventRow> = events.iter().map(|e| (e.event_id, e)).collect();
    let by_position: HashMap<i64, &EventRow> = events.iter().map(|e| (e.position, e)).collect();

    // Every request answered 2xx is in the event store.
    let user_type = UserEvent::REGISTERED.aggregate_type();
    let registered: BTreeSet<String> = events
        .iter()
        .filter(|e| e.event_type == UserEvent::REGISTERED.name())
        .map(|e| e.aggregate_id.clone())
        .collect();
    for id in &accepted.registered {
        assert!(registered.contains(&id.to_string()), "registered {id} lost");
    }
    for (id, position) in &accepted.renamed {
        let event = by_position
            .get(position)
            .unwrap_or_else(|| panic!("rename of {id} at {position} lost"));
        assert_eq!(
            (event.aggregate_id.as_str(), event.event_type.as_str()),
            (
                id.to_string().as_str(),
                UserEvent::DISPLAY_NAME_CHANGED.name()
            )
        );
    }
    let started_sessions: BTreeSet<String> = events
        .iter()
        .filter(|e| e.event_type == SessionEvent::STARTED.name())
        .map(|e| e.aggregate_id.clone())
        .collect();
    for session in &accepted.sessions {
        assert!(
            started_sessions.contains(&session.to_string()),
            "session {session} lost"
        );
    }

    // Every event is applied once: the read models equal the event store.
    let mut names: BTreeMap<Uuid, String> = BTreeMap::new();
    for event in events.iter().filter(|e| e.aggregate_type == user_type) {
        let name = if event.event_type == UserEvent::REGISTERED.name() {
            field(&event.payload, UserEvent::REGISTERED_DISPLAY_NAME.path())
        } else if event.event_type == UserEvent::DISPLAY_NAME_CHANGED.name() {
            field(
                &event.payload,
                UserEvent::DISPLAY_NAME_CHANGED_DISPLAY_NAME.path(),
            )
        } else {
            continue;
        };
        names.insert(Uuid::parse_str(&event.aggregate_id).unwrap(), name.into());
    }
    let view: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, display_name FROM users_view")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let view: BTreeMap<Uuid, String> = view.into_iter().collect();
    assert_eq!(view.len(), names.len(), "users_view holds every user once");
    assert!(
        view == names,
        "users_view's display names are the last ones"
    );
    let (audit_rows, audit_positions, audit_unmatched): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT a.global_position), \
                count(*) FILTER (WHERE e.event_id IS NULL OR e.event_id <> a.event_id) \
         FROM audit_log a LEFT JOIN events e ON e.global_position = a.global_position",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (audit_rows, audit_positions, audit_unmatched),
        (events.len() as i64, events.len() as i64, 0),
        "audit_log has exactly one row per event"
    );

    // Every webhook-matching event was delivered at least once.
    let expected = subscribed_events(&db, webhook_from).await;
    let deliveries = received.lock().unwrap().clone();
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for id in &deliveries {
        *per_event.entry(id.as_str()).or_default() += 1;
    }
    for id in &expected {
        assert!(
            per_event.contains_key(id.to_string().as_str()),
            "{id} not delivered"
        );
    }
    for id in per_event.keys() {
        let event = Uuid::parse_str(id)
            .ok()
            .and_then(|id| by_id.get(&id))
            .unwrap_or_else(|| panic!("delivered {id:?} is no event"));
        assert_eq!(
            event.aggregate_type, user_type,
            "only subscribed types delivered"
        );
    }
    let duplicates = deliveries.len() - per_event.len();

    // No lock written twice. The worker locks until `failed_at + duration`
    // of the failure that reached the threshold, and the aggregate writes a
    // lock only if it ends later than the current one: a redelivered or
    // concurrently handled failure decides the same `until` and writes
    // nothing. So per user every lock has its own cause and its own, later
    // `until`; here each target gets exactly THRESHOLD failures and no
    // unlock, so a user with THRESHOLD failures has exactly one lock.
    let mut failures: HashMap<&str, usize> = HashMap::new();
    let mut locks: HashMap<&str, Vec<&EventRow>> = HashMap::new();
    for event in &events {
        if event.event_type == UserEvent::LOGIN_FAILED.name() {
            *failures.entry(&event.aggregate_id).or_default() += 1;
        } else if event.event_type == UserEvent::LOCKED.name() {
            locks.entry(&event.aggregate_id).or_default().push(event);
        }
    }
    for (user, user_locks) in &locks {
        let untils: Vec<&str> = user_locks
            .iter()
            .map(|lock| lock.payload["Locked"]["until"].as_str().expect("until"))
            .collect();
        let causes: BTreeSet<&Option<String>> =
            user_locks.iter().map(|lock| &lock.causation).collect();
        assert_eq!(
            causes.len(),
            user_locks.len(),
            "{user}: a failure locked twice"
        );
        assert_eq!(
            untils.iter().collect::<BTreeSet<_>>().len(),
            untils.len(),
            "{user}: two locks until the same time {untils:?}"
        );
        assert_eq!(user_locks.len(), 1, "{user} locked twice: {untils:?}");
        assert!(failures.get(user).copied().unwrap_or(0) >= THRESHOLD);
    }
    let locked_targets = accepted
        .targets
        .iter()
        .filter(|(id, _)| locks.contains_key(id.to_string().as_str()))
        .count();
    for (id, refused) in &accepted.targets {
        let stored = failures.get(id.to_string().as_str()).copied().unwrap_or(0);
        if stored < THRESHOLD {
            eprintln!(
                "kill: target {id} not locked: {refused} x 401 answered, {stored} failures stored"
            );
        }
    }
    assert!(locked_targets > 0, "the load locked someone");

    // No expiry written twice.
    let mut expiries: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        if event.event_type == SessionEvent::EXPIRED.name() {
            *expiries.entry(&event.aggregate_id).or_default() += 1;
        }
    }
    let twice: Vec<_> = expiries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sessions expired twice: {twice:?}");

    eprintln!(
        "kill: {} requests ({} unanswered by the killed api), {} registered, {} renamed, {} sessions accepted",
        accepted.requests,
        accepted.unanswered,
        accepted.registered.len(),
        accepted.renamed.len(),
        accepted.sessions.len(),
    );
    eprintln!(
        "kill: events {}, users {}, audit_log rows {audit_rows}; webhook events {}, deliveries {}, duplicates {duplicates}",
        events.len(),
        view.len(),
        expected.len(),
        deliveries.len(),
    );
    eprintln!(
        "kill: locks {} ({locked_targets} of {} targets), sessions expired {}; settled {settled_after:?} after the load, {:?} in all",
        locks.len(),
        accepted.targets.len(),
        expiries.len(),
        started.elapsed(),
    );
    drop(api_b);
}
