//! A failed login is stored before it is answered, and settled (counted for
//! its address, appended as `user.login_failed`) after: none that was
//! answered is lost when the api stops in between, and none is counted or
//! appended twice when it is settled again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bus::{metadata_keys, EventMetadata};
use cqrs_es::Aggregate;
use domain::{User, UserCommand, UserEvent};
use infra::commands::CommandBus;
use infra::testing::{eventually, TestDatabase, TestTopology};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{projector_group, spawn_app_with, start_api_with, GOOD_PASSWORD};

const WRONG_PASSWORD: &str = "not the password at all";
const ADDRESS: &str = "198.51.100.7";
/// The wait for failures to be settled, beside every other test.
const SETTLE: Duration = Duration::from_secs(60);

/// A failure stored by an api that still holds its lease (see
/// [`stop_holding`]).
async fn leave_pending(pool: &PgPool, user_id: Option<Uuid>) -> Uuid {
    let id = Uuid::new_v4();
    let metadata = EventMetadata {
        causation_id: Some(id.to_string()),
        correlation_id: Some(Uuid::new_v4().to_string()),
        request_ip: Some(ADDRESS.into()),
        ..EventMetadata::default()
    };
    sqlx::query(
        "INSERT INTO pending_login_failures \
             (id, user_id, address, ip, failed_at, metadata, leased_until) \
         VALUES ($1, $2, $3, $3, now(), $4, now() + interval '1 hour')",
    )
    .bind(id)
    .bind(user_id)
    .bind(ADDRESS)
    .bind(sqlx::types::Json(&metadata))
    .execute(pool)
    .await
    .unwrap();
    id
}

/// The api that held the pending failures stopped, and their leases ran
/// out (5 minutes, passed here at once).
async fn stop_holding(pool: &PgPool) {
    sqlx::query("UPDATE pending_login_failures SET leased_until = now()")
        .execute(pool)
        .await
        .unwrap();
}

async fn pending(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pending_login_failures")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_until_settled(pool: &PgPool) {
    eventually(SETTLE, "every failed login settled", || async {
        (pending(pool).await == 0).then_some(())
    })
    .await;
}

/// The causation ids of the user's `user.login_failed` events, in order.
async fn failure_events(pool: &PgPool, user_id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT metadata->>$4 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         AND event_type = $3 ORDER BY sequence",
    )
    .bind(<User as Aggregate>::TYPE)
    .bind(user_id)
    .bind(UserEvent::LOGIN_FAILED.name())
    .bind(metadata_keys::CAUSATION_ID)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn address_failures(pool: &PgPool, address: &str) -> Vec<Option<Uuid>> {
    sqlx::query_scalar("SELECT failure_id FROM login_address_failures WHERE address = $1")
        .bind(address)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn failures_a_stopped_api_left_pending_are_settled_once() {
    let app = spawn_app_with(&["--failed-login-recovery-interval-ms=200"]).await;
    let pool = app.db.pool.clone();
    let (user, _) = app.register("pending@example.com", "Pending").await;
    let user_id: Uuid = user.parse().unwrap();

    let mut for_user = Vec::new();
    for _ in 0..3 {
        for_user.push(leave_pending(&pool, Some(user_id)).await);
    }
    for _ in 0..2 {
        leave_pending(&pool, None).await;
    }
    // Already counted for its address by an earlier attempt.
    let counted_before = leave_pending(&pool, None).await;
    sqlx::query(
        "INSERT INTO login_address_failures (address, failed_at, failure_id) \
         VALUES ($1, now(), $2)",
    )
    .bind(ADDRESS)
    .bind(counted_before)
    .execute(&pool)
    .await
    .unwrap();
    // Stopped after appending the event and before removing the failure.
    let appended = leave_pending(&pool, Some(user_id)).await;
    let metadata: sqlx::types::Json<EventMetadata> =
        sqlx::query_scalar("SELECT metadata FROM pending_login_failures WHERE id = $1")
            .bind(appended)
            .fetch_one(&pool)
            .await
            .unwrap();
    CommandBus::<User>::new(pool.clone())
        .execute(
            &user,
            UserCommand::RecordLoginFailure {
                ip: Some(ADDRESS.into()),
                at: chrono::Utc::now(),
            },
            &metadata,
        )
        .await
        .unwrap();
    for_user.push(appended);

    stop_holding(&pool).await;
    wait_until_settled(&pool).await;

    let mut events = failure_events(&pool, &user).await;
    events.sort();
    let mut expected: Vec<String> = for_user.iter().map(Uuid::to_string).collect();
    expected.sort();
    assert_eq!(events, expected, "one user.login_failed per failure");
    let counted = address_failures(&pool, ADDRESS).await;
    assert_eq!(counted.len(), 7, "one count per failure: {counted:?}");
    assert!(counted.iter().all(Option::is_some));
}

/// Wrong-password logins against one account until `stop`; counts what
/// was sent and what was answered 401.
async fn fail_logins(
    address: String,
    email: &'static str,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) {
    let client = reqwest::Client::new();
    while !stop.load(Ordering::SeqCst) {
        sent.fetch_add(1, Ordering::SeqCst);
        let answer = client
            .post(format!("{address}/v1/auth/login"))
            .json(&json!({"email": email, "password": WRONG_PASSWORD}))
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == 401 => {
                refused.fetch_add(1, Ordering::SeqCst);
            }
            Ok(response) => panic!("a failed login answered {}", response.status()),
            // The api was killed under this request.
            Err(_) => return,
        }
    }
}

#[tokio::test]
async fn no_failed_login_answered_before_a_sigkill_is_lost_or_doubled() {
    const EMAIL: &str = "victim@example.com";
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let pool = db.pool.clone();
    let loose = [
        ("LOCKOUT_IP_THRESHOLD", "1000000"),
        ("AUTH_RATE_PER_SECOND", "100000"),
        ("AUTH_RATE_BURST", "100000"),
        ("FAILED_LOGIN_RECOVERY_INTERVAL_MS", "200"),
    ];
    let mut first = start_api_with(&db, &topology, &loose, None).await;
    let registered = reqwest::Client::new()
        .post(format!("{}/v1/users", first.address))
        .json(&json!({"email": EMAIL, "password": GOOD_PASSWORD, "display_name": "Victim"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let user: String = registered.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, refused) = (Arc::default(), Arc::<AtomicUsize>::default());
    // Two at a time: more on one account are refused 429 before the check.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(fail_logins(
                first.address.clone(),
                EMAIL,
                stop.clone(),
                Arc::clone(&sent),
                refused.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let (sent, refused) = (sent.load(Ordering::SeqCst), refused.load(Ordering::SeqCst));
    let left = pending(&pool).await;
    println!("{sent} sent, {refused} answered 401, {left} pending at the kill");
    assert!(refused > 0);

    // Another api settles what the killed one held.
    stop_holding(&pool).await;
    let _second = start_api_with(&db, &topology, &loose, None).await;
    wait_until_settled(&pool).await;

    let events = failure_events(&pool, &user).await;
    let distinct: std::collections::BTreeSet<_> = events.iter().collect();
    assert_eq!(distinct.len(), events.len(), "a failure appended twice");
    assert!(
        (refused..=sent).contains(&events.len()),
        "{} user.login_failed for {refused} answered and {sent} sent",
        events.len()
    );
    let counted = address_failures(&pool, "127.0.0.1").await;
    assert_eq!(counted.len(), events.len(), "per address as per account");
}

#[tokio::test]
async fn erasing_a_person_removes_their_failures_not_yet_settled() {
    let app = spawn_app_with(&["--failed-login-recovery-interval-ms=200"]).await;
    let pool = app.db.pool.clone();
    let (user, _) = app.register("erased@example.com", "Erased").await;
    let theirs = leave_pending(&pool, Some(user.parse().unwrap())).await;
    let someone_elses = leave_pending(&pool, None).await;

    let response = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/users/{user}/erase"),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(response.status(), 200);

    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM pending_login_failures")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(!left.contains(&theirs), "{left:?}");
    assert_eq!(left, vec![someone_elses]);
}
