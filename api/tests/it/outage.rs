//! PostgreSQL out of reach for 15 s under a load of registrations, through
//! a TCP proxy the test cuts and restores between the api (and its relay)
//! and the database: every answer is a 201 or a 503 `unavailable` problem
//! with `Retry-After`, none hangs, `/health/ready` names the database while
//! it is away, the api recovers by itself, and every registration that got
//! a 201 is in the event store and in the read model.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infra::testing::{eventually, TcpProxy, TestDatabase, TestTopology};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{
    api_settings, projector_group, spawn_projector, start_api_with, GOOD_PASSWORD, UNLIMITED,
};

const CLIENTS: usize = 4;
const OUTAGE: Duration = Duration::from_secs(15);
/// Longest any answer may take. The pool gives up acquiring a connection
/// after 5 s, and a registration caught by the cut waits twice: for its
/// command, then to release its email claim (about 10 s in all).
const NO_HANG: Duration = Duration::from_secs(12);

/// One answer: status, how long it took, the problem type and Retry-After
/// of an error, the user id of a 201, and whether the database was away.
#[derive(Debug)]
struct Answer {
    status: u16,
    took: Duration,
    problem: Option<String>,
    retry_after: Option<String>,
    id: Option<String>,
    during_outage: bool,
}

async fn register(client: &reqwest::Client, address: &str, outage: &AtomicBool) -> Answer {
    let email = format!("{}@example.com", Uuid::new_v4());
    let started = Instant::now();
    let during_outage = outage.load(Ordering::SeqCst);
    let response = client
        .post(format!("{address}/v1/users"))
        .json(&json!({"email": email, "password": GOOD_PASSWORD, "display_name": "Load"}))
        .send()
        .await
        .expect("an answer, not a hang or a dropped connection");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        took: started.elapsed(),
        problem: body["type"].as_str().map(str::to_owned),
        retry_after,
        id: (status == 201).then(|| body["id"].as_str().unwrap().to_owned()),
        during_outage: during_outage || outage.load(Ordering::SeqCst),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_503_while_postgresql_is_away_and_loses_no_acknowledged_command() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let postgres: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = TcpProxy::start(postgres).await;
    let proxied = db.url.replace(":5432/", &format!(":{}/", proxy.port()));
    assert_ne!(proxied, db.url, "the test database is on 127.0.0.1:5432");
    spawn_projector(&api_settings(&db, &topology, &[]).common).await;
    let env = [
        ("DATABASE_URL", proxied.as_str()),
        // The load is sign-ups from one address.
        ("AUTH_RATE_PER_SECOND", UNLIMITED),
        ("AUTH_RATE_BURST", UNLIMITED),
    ];
    let api = start_api_with(&db, &topology, &env, None).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let outage = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, address) = (client.clone(), api.address.clone());
            let (outage, stop, sent) = (outage.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    answers.push(register(&client, &address, &outage).await);
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(5)).await;
    outage.store(true, Ordering::SeqCst);
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = client
        .get(format!("{}/health/ready", api.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let problem: Value = ready.json().await.unwrap();
    assert!(
        problem["missing"]
            .as_array()
            .unwrap()
            .contains(&json!("database")),
        "{problem}"
    );
    tokio::time::sleep(OUTAGE - Duration::from_secs(3)).await;
    proxy.restore().await;
    outage.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    for client in load {
        answers.extend(client.await.unwrap());
    }

    report_and_check(&answers);
    assert!(
        answers.iter().any(|a| a.status == 201 && !a.during_outage),
        "no registration succeeded after the database came back"
    );
    let acknowledged: Vec<Uuid> = answers
        .iter()
        .filter_map(|answer| answer.id.as_deref())
        .map(|id| Uuid::parse_str(id).unwrap())
        .collect();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events \
         WHERE aggregate_type = 'user' AND aggregate_id = ANY($1)",
    )
    .bind(acknowledged.iter().map(Uuid::to_string).collect::<Vec<_>>())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        stored as usize,
        acknowledged.len(),
        "every 201 is in the event store"
    );
    eventually(
        Duration::from_secs(60),
        "every 201 in users_view",
        || async {
            let projected: i64 =
                sqlx::query_scalar("SELECT count(*) FROM users_view WHERE id = ANY($1)")
                    .bind(&acknowledged)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            (projected as usize == acknowledged.len()).then_some(())
        },
    )
    .await;
}

/// Prints the counts and checks every answer: 201, or a 503 `unavailable`
/// (or `overloaded`) problem with `Retry-After`; none slower than [`NO_HANG`].
fn report_and_check(answers: &[Answer]) {
    let count = |f: &dyn Fn(&Answer) -> bool| answers.iter().filter(|a| f(a)).count();
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    eprintln!(
        "postgresql outage: {} requests, {} x 201 ({} during the outage), {} x 503, slowest {:?}",
        answers.len(),
        count(&|a| a.status == 201),
        count(&|a| a.status == 201 && a.during_outage),
        count(&|a| a.status == 503),
        slowest,
    );
    for answer in answers {
        assert!(answer.took < NO_HANG, "{answer:?}");
        match answer.status {
            201 => {}
            503 => {
                assert!(answer.retry_after.is_some(), "{answer:?}");
                let kind = answer.problem.as_deref().unwrap_or_default();
                assert!(
                    kind.ends_with("/unavailable") || kind.ends_with("/overloaded"),
                    "{answer:?}"
                );
            }
            _ => panic!("neither 201 nor 503: {answer:?}"),
        }
    }
    assert!(count(&|a| a.status == 503) > 0, "the outage was never seen");
}

/// PostgreSQL behind a proxy that still accepts but whose backend is gone
/// (HAProxy, PgBouncer, a cloud SQL proxy): each new connection is closed
/// at once, after nothing or after a stray byte that is no PostgreSQL
/// answer. Every answer is still a 201 or a 503 `unavailable` with
/// `Retry-After`, never a 500, and the api recovers once the backend is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_accepts_and_closes_gets_503_never_500() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let postgres: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = TcpProxy::start(postgres).await;
    let proxied = db.url.replace(":5432/", &format!(":{}/", proxy.port()));
    let env = [
        ("DATABASE_URL", proxied.as_str()),
        // The load is sign-ups from one address.
        ("AUTH_RATE_PER_SECOND", UNLIMITED),
        ("AUTH_RATE_BURST", UNLIMITED),
    ];
    let api = start_api_with(&db, &topology, &env, None).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let never = AtomicBool::new(false);
    assert_eq!(register(&client, &api.address, &never).await.status, 201);

    for answer in [&b"\0"[..], b"", b"N"] {
        proxy.lose_backend(answer);
        let mut answers = Vec::new();
        for _ in 0..6 {
            answers.push(register(&client, &api.address, &never).await);
        }
        for answer in &answers {
            assert!(
                answer.status == 201
                    || (answer.status == 503
                        && answer
                            .problem
                            .as_deref()
                            .is_some_and(|t| t.ends_with("/unavailable"))
                        && answer.retry_after.is_some()),
                "{answer:?}"
            );
        }
        assert!(
            answers.iter().any(|answer| answer.status == 503),
            "the lost backend was noticed: {answers:?}"
        );
        proxy.find_backend();
        eventually(Duration::from_secs(20), "the api recovers", || async {
            (register(&client, &api.address, &never).await.status == 201).then_some(())
        })
        .await;
    }
}
