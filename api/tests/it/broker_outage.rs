//! RabbitMQ out of reach for 15 s under a load of registrations, through a
//! TCP proxy the test cuts and restores between the api (and its relay) and
//! the broker: every command keeps succeeding (the event store is the
//! outbox), `/health/ready` names the broker while it is away, and once it
//! is back the relay's backlog drains until the read model holds exactly
//! the users the event store holds. A webhook subscribed to the user events
//! before the load (the worker reaching the broker directly, so only the
//! relay is cut) receives, once the broker is back, every `user.registered`
//! event committed after its registration, those of the cut included.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::UserEvent;
use infra::testing::{eventually, TcpProxy, TestDatabase, TestTopology};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::user_events_webhook::{register_user_events_webhook, start_receiver};
use crate::support::{
    api_settings, bootstrap_admin, login_with_permissions, projector_group, settled,
    spawn_projector, spawn_worker, start_api_with, worker_group, ADMIN_EMAIL, GOOD_PASSWORD,
    UNLIMITED,
};

const CLIENTS: usize = 4;
const OUTAGE: Duration = Duration::from_secs(15);

async fn registered_in_store(db: &TestDatabase) -> BTreeSet<Uuid> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT aggregate_id FROM events WHERE event_type = $1")
            .bind(UserEvent::REGISTERED.name())
            .fetch_all(&db.pool)
            .await
            .unwrap();
    ids.iter().map(|id| Uuid::parse_str(id).unwrap()).collect()
}

/// Ids of the `user.registered` events committed after `from` (the
/// webhook's registration), in publishing order.
async fn registered_events_after(db: &TestDatabase, from: (i64, i64)) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT event_id FROM events WHERE event_type = $1 \
           AND (transaction_id::text::bigint, global_position) > ($2, $3) \
         ORDER BY transaction_id, global_position",
    )
    .bind(UserEvent::REGISTERED.name())
    .bind(from.0)
    .bind(from.1)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

async fn in_users_view(db: &TestDatabase) -> BTreeSet<Uuid> {
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM users_view")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_succeed_while_rabbitmq_is_away_and_the_backlog_drains_after() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![
        projector_group(),
        worker_group(),
        worker::settings::webhook_consumer_group(10),
    ]);
    let broker: SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = TcpProxy::start(broker).await;
    let amqp = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port());
    // The projector and the worker reach the broker directly: only the
    // api's relay goes through the proxy.
    let common = api_settings(&db, &topology, &[]).common;
    spawn_projector(&common).await;
    spawn_worker(
        &common,
        &[
            "--webhooks-allow-http=true",
            "--webhooks-allow-private-networks=true",
            "--webhook-poll-interval-ms=50",
        ],
    )
    .await;
    let admin_id = bootstrap_admin(&db).await;
    let api = start_api_with(
        &db,
        &topology,
        &[
            ("AMQP_URL", &amqp),
            ("WEBHOOKS_ALLOW_HTTP", "true"),
            ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true"),
            // The load is sign-ups from one address.
            ("AUTH_RATE_PER_SECOND", UNLIMITED),
            ("AUTH_RATE_BURST", UNLIMITED),
        ],
        None,
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let (receiver_url, received) = start_receiver().await;
    let admin_token =
        login_with_permissions(&client, &api.address, ADMIN_EMAIL, GOOD_PASSWORD).await;
    let (_, webhook_from) =
        register_user_events_webhook(&client, &api.address, &admin_token, &receiver_url, &db).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, address, stop) = (client.clone(), api.address.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let email = format!("{}@example.com", Uuid::new_v4());
                    let body =
                        json!({"email": email, "password": GOOD_PASSWORD, "display_name": "B"});
                    let response = client
                        .post(format!("{address}/v1/users"))
                        .json(&body)
                        .send()
                        .await
                        .expect("an answer");
                    statuses.push(response.status().as_u16());
                }
                statuses
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.cut();
    let during_cut = registered_in_store(&db).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = client
        .get(format!("{}/health/ready", api.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let problem: Value = ready.json().await.unwrap();
    assert_eq!(problem["missing"], json!(["broker"]), "{problem}");
    tokio::time::sleep(OUTAGE - Duration::from_secs(3)).await;
    let before_restore = registered_in_store(&db).await.len();
    let backlog = before_restore - in_users_view(&db).await.len();
    proxy.restore().await;
    let restored = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for client in load {
        statuses.extend(client.await.unwrap());
    }

    let created = statuses.iter().filter(|status| **status == 201).count();
    eprintln!(
        "rabbitmq outage: {} registrations, {created} x 201, {} during the cut, backlog {backlog} at restore",
        statuses.len(),
        before_restore - during_cut,
    );
    assert_eq!(
        created,
        statuses.len(),
        "every command succeeded: {statuses:?}"
    );
    assert!(
        before_restore > during_cut,
        "commands went on during the cut"
    );
    assert!(backlog > 0, "events waited for the broker");
    let stored = registered_in_store(&db).await;
    let admin = Uuid::parse_str(&admin_id).unwrap();
    assert!(stored.contains(&admin), "the administrator is registered");
    assert_eq!(
        stored.len() - 1,
        created,
        "the event store holds the administrator and every user answered 201"
    );
    eventually(
        Duration::from_secs(60),
        "users_view equal to the event store",
        || async { (in_users_view(&db).await == stored).then_some(()) },
    )
    .await;
    eprintln!(
        "rabbitmq outage: read model equal to the event store {:?} after the restore",
        restored.elapsed()
    );

    // Every `user.registered` event after the webhook's registration, those
    // of the cut included, reached the receiver at least once.
    settled(&db.pool).await;
    let expected = registered_events_after(&db, webhook_from).await;
    assert_eq!(expected.len(), created, "one event per user answered 201");
    eventually(
        Duration::from_secs(60),
        "every registration delivered to the webhook",
        || async {
            let seen: BTreeSet<String> = received.lock().unwrap().iter().cloned().collect();
            expected
                .iter()
                .all(|id| seen.contains(&id.to_string()))
                .then_some(())
        },
    )
    .await;
    let deliveries = received.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = deliveries.iter().collect();
    let undelivered: Vec<&Uuid> = expected
        .iter()
        .filter(|id| !distinct.contains(&id.to_string()))
        .collect();
    assert!(undelivered.is_empty(), "not delivered: {undelivered:?}");
    eprintln!(
        "rabbitmq outage: webhook: {} registered during the cut, {} registrations expected, {} delivered ({} deliveries, {} duplicates) {:?} after the restore",
        before_restore - during_cut,
        expected.len(),
        expected.len() - undelivered.len(),
        deliveries.len(),
        deliveries.len() - distinct.len(),
        restored.elapsed()
    );
}
