//! Webhook delivery through the real broker and HTTP: receivers are actix
//! servers of the test's own on port 0. Every delivery is checked with the
//! `standardwebhooks` crate's verifier.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use domain::webhook::{EventTypePattern, EventTypePatterns, WebhookDescription, WebhookUrl};
use domain::{UserEvent, Webhook, WebhookCommand};
use infra::commands::CommandBus;
use infra::testing::{eventually, request_metadata};
use infra::webhooks::{SecretStore, SigningSecret};
use serde_json::Value;
use uuid::Uuid;

use crate::support::{now, run, Fixture, TIMEOUT};

/// What a receiver answers next.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// Never answers (the worker's timeout ends the attempt).
    Hang,
    /// Answers 204 after a while.
    Slow(Duration),
}

#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Verifies the Standard Webhooks signature with `secret`.
    fn verify(&self, secret: &SigningSecret) -> Result<(), standardwebhooks::WebhookError> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in [
            (standardwebhooks::HEADER_WEBHOOK_ID, &self.id),
            (standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, &self.timestamp),
            (standardwebhooks::HEADER_WEBHOOK_SIGNATURE, &self.signature),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        standardwebhooks::Webhook::new(secret.expose())?.verify(&self.body, &headers)
    }
}

/// An HTTP server recording every request, answering as planned (204 once
/// the plan is used up, or `then` if set).
#[derive(Clone)]
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    plan: Arc<Mutex<VecDeque<Reply>>>,
    then: Arc<Mutex<Reply>>,
}

impl Receiver {
    async fn start(plan: Vec<Reply>, then: Reply) -> Self {
        let receiver = Self {
            url: String::new(),
            received: Arc::default(),
            plan: Arc::new(Mutex::new(plan.into())),
            then: Arc::new(Mutex::new(then)),
        };
        let state = receiver.clone();
        let server = actix_web::HttpServer::new(move || {
            let state = state.clone();
            actix_web::App::new().default_service(actix_web::web::to(
                move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                    let state = state.clone();
                    async move { state.answer(&req, body).await }
                },
            ))
        })
        .workers(2)
        .bind("127.0.0.1:0")
        .expect("bind receiver");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            ..receiver
        }
    }

    async fn answer(
        &self,
        req: &actix_web::HttpRequest,
        body: actix_web::web::Bytes,
    ) -> actix_web::HttpResponse {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        self.received.lock().unwrap().push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: body.to_vec(),
        });
        let reply = self
            .plan
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(*self.then.lock().unwrap());
        let status = match reply {
            Reply::Status(status) => status,
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                204
            }
            Reply::Slow(delay) => {
                tokio::time::sleep(delay).await;
                204
            }
        };
        let status = actix_web::http::StatusCode::from_u16(status).unwrap();
        actix_web::HttpResponse::build(status).finish()
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn ids(&self) -> BTreeSet<String> {
        self.received().into_iter().map(|r| r.id).collect()
    }

    /// Waits until it has seen every id in `ids`.
    async fn wait_for(&self, ids: &BTreeSet<String>, timeout: Duration) {
        eventually(timeout, "every delivery received", || async {
            ids.is_subset(&self.ids()).then_some(())
        })
        .await;
    }
}

fn patterns(values: &[&str]) -> EventTypePatterns {
    let set = values
        .iter()
        .map(|v| EventTypePattern::parse(v).unwrap())
        .collect();
    EventTypePatterns::new(set).unwrap()
}

/// Registers a webhook as the api does (its secret stored first): `(id, secret)`.
async fn register(fx: &Fixture, url: &str, types: &[&str]) -> (Uuid, SigningSecret) {
    let webhook_id = Uuid::now_v7();
    let secret_id = Uuid::new_v4();
    let secret = SigningSecret::generate();
    SecretStore::new(fx.pool().clone())
        .store(secret_id, webhook_id, &secret)
        .await
        .unwrap();
    let command = WebhookCommand::Register {
        webhook_id,
        url: WebhookUrl::parse(url).unwrap(),
        event_types: patterns(types),
        description: WebhookDescription::default(),
        secret_id,
    };
    execute(fx, webhook_id, command).await;
    (webhook_id, secret)
}

async fn execute(fx: &Fixture, webhook_id: Uuid, command: WebhookCommand) {
    CommandBus::<Webhook>::new(fx.pool().clone())
        .execute(
            &webhook_id.to_string(),
            command,
            &request_metadata(None, "webhook-tests"),
        )
        .await
        .expect("webhook command");
}

/// The fixture with the worker's webhook queue declared before anything is
/// published (so the exchange never drops an event meant for it).
async fn fixture(tune: impl FnOnce(&mut worker::settings::WorkerSettings)) -> Fixture {
    let fx = Fixture::new(tune).await;
    let group = worker::settings::webhook_consumer_group(fx.settings.delivery_limit);
    let (connection, _channel, _publisher) =
        fx.broker.topology.declare_for_publishing(&group).await;
    let _ = connection.close(200, "declared".into()).await;
    fx
}

/// Registers `count` users and publishes their events: the event ids of
/// their `user.registered`.
async fn registrations(fx: &Fixture, count: usize) -> BTreeSet<String> {
    for _ in 0..count {
        fx.register().await;
    }
    fx.forward()
        .await
        .into_iter()
        .filter(|e| e.event_type == UserEvent::REGISTERED.name())
        .map(|e| e.event_id.to_string())
        .collect()
}

async fn delivery_statuses(fx: &Fixture, webhook_id: Uuid) -> Vec<(String, i32)> {
    sqlx::query_as(
        "SELECT status, failures FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY global_position",
    )
    .bind(webhook_id)
    .fetch_all(fx.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn matching_events_published_after_registration_are_delivered_signed_with_their_event_id() {
    let fx = fixture(|_| {}).await;
    let users = Receiver::start(vec![], Reply::Status(204)).await;
    let sessions = Receiver::start(vec![], Reply::Status(204)).await;
    let before = registrations(&fx, 1).await;
    let (_, secret) = register(&fx, &users.url, &["user.*"]).await;
    register(&fx, &sessions.url, &["session.revoked"]).await;
    let (disabled_id, _) = register(&fx, &sessions.url, &["*"]).await;
    let disable = WebhookCommand::Update {
        url: None,
        event_types: None,
        description: None,
        enabled: Some(false),
    };
    execute(&fx, disabled_id, disable).await;
    fx.forward().await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let expected = registrations(&fx, 3).await;

    users.wait_for(&expected, TIMEOUT).await;
    fx.drain().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = users.received();
    assert_eq!(
        users.ids(),
        expected,
        "only events after the webhook, each once"
    );
    assert!(before.is_disjoint(&users.ids()));
    for delivery in &received {
        delivery.verify(&secret).expect("a valid signature");
        let body = delivery.json();
        assert_eq!(body["event_id"], delivery.id.as_str());
        assert_eq!(body["event_type"], UserEvent::REGISTERED.name());
        assert_eq!(
            body["payload"]["Registered"]["password_hash"],
            domain::REDACTED,
            "{body}"
        );
    }
    let other = SigningSecret::generate();
    assert!(received[0].verify(&other).is_err(), "another secret fails");
    assert!(sessions.received().is_empty(), "{:?}", sessions.received());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_gets_the_same_id_until_it_answers() {
    let fx = fixture(|_| {}).await;
    let receiver = Receiver::start(
        vec![Reply::Status(500), Reply::Status(503)],
        Reply::Status(200),
    )
    .await;
    let (webhook_id, secret) = register(&fx, &receiver.url, &["user.registered"]).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let expected = registrations(&fx, 1).await;
    eventually(TIMEOUT, "the third attempt", || async {
        (receiver.received().len() >= 3).then_some(())
    })
    .await;
    eventually(TIMEOUT, "the delivery recorded", || async {
        let statuses = delivery_statuses(&fx, webhook_id).await;
        (statuses == [("delivered".to_owned(), 2)]).then_some(())
    })
    .await;
    let received = receiver.received();
    assert_eq!(received.len(), 3, "3 attempts");
    assert_eq!(receiver.ids(), expected, "one webhook-id on every attempt");
    for attempt in &received {
        attempt.verify(&secret).unwrap();
    }
    let attempts: Vec<(Option<i32>, String)> = sqlx::query_as(
        "SELECT status_code, outcome FROM webhook_delivery_attempts ORDER BY attempt_id",
    )
    .fetch_all(fx.pool())
    .await
    .unwrap();
    assert_eq!(
        attempts,
        [
            (Some(500), "failed".to_owned()),
            (Some(503), "failed".to_owned()),
            (Some(200), "delivered".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_is_dead_after_the_last_attempt() {
    let fx = fixture(|s| s.webhooks.webhook_max_attempts = 3).await;
    let receiver = Receiver::start(vec![], Reply::Status(500)).await;
    let (webhook_id, _) = register(&fx, &receiver.url, &["user.*"]).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    registrations(&fx, 1).await;
    eventually(TIMEOUT, "the delivery dead", || async {
        let statuses = delivery_statuses(&fx, webhook_id).await;
        (statuses == [("dead".to_owned(), 3)]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 3, "no attempt after the last");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_receiver_holds_up_neither_other_receivers_nor_the_lockout() {
    let fx = fixture(|s| {
        s.lockout_threshold = 3;
        s.webhooks.webhook_timeout_ms = 20_000;
    })
    .await;
    let hanging = Receiver::start(vec![], Reply::Hang).await;
    let healthy = Receiver::start(vec![], Reply::Status(204)).await;
    register(&fx, &hanging.url, &["user.*"]).await;
    register(&fx, &healthy.url, &["user.*"]).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;

    let expected = registrations(&fx, 10).await;
    let victim = fx.register().await;
    for second in 0..3 {
        fx.fail_login(victim, None, now() - TimeDelta::seconds(3 - second))
            .await;
    }
    let mut expected_healthy = expected.clone();
    expected_healthy.extend(
        fx.forward()
            .await
            .into_iter()
            .map(|e| e.event_id.to_string()),
    );

    // Well within the hanging receiver's 20 s timeout.
    let prompt = Duration::from_secs(8);
    healthy.wait_for(&expected_healthy, prompt).await;
    eventually(prompt, "the user locked", || async {
        let locks = fx.events_of(victim, UserEvent::LOCKED).await;
        (!locks.is_empty()).then_some(())
    })
    .await;
    let in_flight = hanging.received().len();
    assert!(
        (1..=fx.settings.webhooks.webhook_max_in_flight as usize).contains(&in_flight),
        "the hanging receiver holds at most its own slots: {in_flight}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_worker_mid_delivery_loses_no_delivery() {
    let fx = fixture(|s| s.webhooks.webhook_timeout_ms = 1_000).await;
    let receiver = Receiver::start(vec![], Reply::Slow(Duration::from_millis(300))).await;
    let (webhook_id, secret) = register(&fx, &receiver.url, &["user.*"]).await;
    let worker = run::start_in_process(fx.settings.clone()).await;
    let expected = registrations(&fx, 12).await;
    eventually(TIMEOUT, "a first request in flight", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    drop(worker);
    let delivered_before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'delivered'",
    )
    .bind(webhook_id)
    .fetch_one(fx.pool())
    .await
    .unwrap();
    assert!(
        delivered_before < expected.len() as i64,
        "killed mid-way: {delivered_before} of {} delivered",
        expected.len()
    );

    let _restarted = run::start_in_process(fx.settings.clone()).await;
    receiver.wait_for(&expected, TIMEOUT).await;
    eventually(TIMEOUT, "every delivery recorded", || async {
        let statuses = delivery_statuses(&fx, webhook_id).await;
        (statuses.len() == expected.len() && statuses.iter().all(|(s, _)| s == "delivered"))
            .then_some(())
    })
    .await;
    let received = receiver.received();
    assert!(received.len() >= expected.len());
    for delivery in &received {
        delivery.verify(&secret).unwrap();
    }
    let distinct: HashSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(distinct.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn during_a_rotation_both_secrets_sign() {
    let fx = fixture(|_| {}).await;
    let receiver = Receiver::start(vec![], Reply::Status(204)).await;
    let (webhook_id, old) = register(&fx, &receiver.url, &["user.*"]).await;
    let new_id = Uuid::new_v4();
    let new = SigningSecret::generate();
    SecretStore::new(fx.pool().clone())
        .store(new_id, webhook_id, &new)
        .await
        .unwrap();
    let rotate = WebhookCommand::RotateSecret {
        secret_id: new_id,
        previous_valid_until: Utc::now() + TimeDelta::hours(1),
    };
    execute(&fx, webhook_id, rotate).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let expected = registrations(&fx, 1).await;
    receiver.wait_for(&expected, TIMEOUT).await;
    let delivery = &receiver.received()[0];
    assert_eq!(
        delivery.signature.split(' ').count(),
        2,
        "{}",
        delivery.signature
    );
    assert!(delivery.signature.split(' ').all(|s| s.starts_with("v1,")));
    delivery.verify(&new).expect("the new secret verifies");
    delivery
        .verify(&old)
        .expect("the old secret still verifies");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_internal_address_is_refused_at_delivery_time() {
    let fx = fixture(|s| s.webhooks.destinations.webhooks_allow_private_networks = false).await;
    let receiver = Receiver::start(vec![], Reply::Status(204)).await;
    // Registered behind the api's back (or its DNS answer changed since).
    let (webhook_id, _) = register(&fx, &receiver.url, &["user.*"]).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    registrations(&fx, 1).await;
    eventually(TIMEOUT, "the delivery dead", || async {
        let statuses = delivery_statuses(&fx, webhook_id).await;
        (statuses == [("dead".to_owned(), 3)]).then_some(())
    })
    .await;
    assert!(receiver.received().is_empty(), "no request reached it");
    let errors: Vec<Option<String>> =
        sqlx::query_scalar("SELECT error FROM webhook_delivery_attempts")
            .fetch_all(fx.pool())
            .await
            .unwrap();
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref().is_some_and(|e| e.contains("internal address"))),
        "{errors:?}"
    );
}

/// The value of sample `name` of `family` whose label has this value (or the only one).
fn sample(
    page: &infra::testing::MetricsPage,
    family: &str,
    name: &str,
    label: Option<(&str, &str)>,
) -> f64 {
    page.families[family]
        .samples
        .iter()
        .find(|s| {
            s.name == name
                && label
                    .is_none_or(|(key, value)| s.labels.get(key).map(String::as_str) == Some(value))
        })
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
        .value
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_counts_deliveries_by_outcome_from_zero() {
    use worker::webhooks::metrics::{DELIVERIES, DURATION};
    let port = infra::testing::free_port();
    let fx = fixture(|s| s.worker_addr = format!("127.0.0.1:{port}")).await;
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(204)).await;
    let (webhook_id, _) = register(&fx, &receiver.url, &["user.*"]).await;
    let _worker = run::spawn_binary(&fx.settings, 1);
    infra::testing::wait_until_ready(port).await;

    let page = infra::testing::scrape(port).await;
    page.assert_conventions();
    page.assert_present_at_zero(&[DELIVERIES, DURATION]);
    let outcomes = page.label_values(DELIVERIES, "outcome");
    assert_eq!(
        outcomes,
        ["dead", "delivered", "failed"].map(String::from).into()
    );

    registrations(&fx, 1).await;
    eventually(TIMEOUT, "delivered", || async {
        let statuses = delivery_statuses(&fx, webhook_id).await;
        (statuses == [("delivered".to_owned(), 1)]).then_some(())
    })
    .await;
    let page = infra::testing::scrape(port).await;
    let count = |outcome| sample(&page, DELIVERIES, DELIVERIES, Some(("outcome", outcome)));
    assert_eq!(
        (count("failed"), count("delivered"), count("dead")),
        (1.0, 1.0, 0.0)
    );
    assert_eq!(
        sample(&page, DURATION, &format!("{DURATION}_count"), None),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_message_adds_no_delivery() {
    let fx = fixture(|_| {}).await;
    let receiver = Receiver::start(vec![], Reply::Status(204)).await;
    let (webhook_id, _) = register(&fx, &receiver.url, &["user.registered"]).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    for _ in 0..2 {
        fx.register().await;
    }
    let published = fx.forward().await;
    // Every message again, as the broker does after a lost acknowledgement.
    fx.broker.publish(&published).await;
    let expected: BTreeSet<String> = published
        .iter()
        .filter(|e| e.event_type == UserEvent::REGISTERED.name())
        .map(|e| e.event_id.to_string())
        .collect();
    receiver.wait_for(&expected, TIMEOUT).await;
    fx.drain().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), expected.len(), "each event once");
    assert_eq!(
        delivery_statuses(&fx, webhook_id).await.len(),
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_disabled_while_a_delivery_waits_gets_no_more_attempts() {
    let fx = fixture(|s| s.webhooks.webhook_retry_base_ms = 3_000).await;
    let receiver = Receiver::start(vec![], Reply::Status(500)).await;
    let (webhook_id, _) = register(&fx, &receiver.url, &["user.*"]).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    registrations(&fx, 1).await;
    eventually(TIMEOUT, "the first attempt", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let disable = WebhookCommand::Update {
        url: None,
        event_types: None,
        description: None,
        enabled: Some(false),
    };
    execute(&fx, webhook_id, disable).await;
    eventually(TIMEOUT, "the delivery given up", || async {
        let statuses = delivery_statuses(&fx, webhook_id).await;
        (statuses == [("dead".to_owned(), 2)]).then_some(())
    })
    .await;
    assert_eq!(receiver.received().len(), 1, "nothing sent once disabled");
    let last_error: Option<String> = sqlx::query_scalar(
        "SELECT error FROM webhook_delivery_attempts ORDER BY attempt_id DESC LIMIT 1",
    )
    .fetch_one(fx.pool())
    .await
    .unwrap();
    assert_eq!(last_error.as_deref(), Some("the webhook is disabled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_deliveries_are_forgotten_after_their_retention_and_pending_ones_kept() {
    let fx = fixture(|s| s.webhooks.webhook_retry_base_ms = 60_000).await;
    let healthy = Receiver::start(vec![], Reply::Status(204)).await;
    let failing = Receiver::start(vec![], Reply::Status(500)).await;
    let (delivered_to, _) = register(&fx, &healthy.url, &["user.*"]).await;
    let (pending_at, _) = register(&fx, &failing.url, &["user.*"]).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    registrations(&fx, 2).await;
    eventually(TIMEOUT, "one attempt each", || async {
        let delivered = delivery_statuses(&fx, delivered_to).await;
        let pending = delivery_statuses(&fx, pending_at).await;
        (delivered.iter().filter(|(s, _)| s == "delivered").count() == 2
            && pending
                .iter()
                .filter(|(s, f)| s == "pending" && *f == 1)
                .count()
                == 2)
            .then_some(())
    })
    .await;
    let kept = worker::webhooks::queue::purge_finished(fx.pool(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(kept, 0, "nothing is old enough yet");
    let purged = worker::webhooks::queue::purge_finished(fx.pool(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(purged, 2);
    assert!(delivery_statuses(&fx, delivered_to).await.is_empty());
    assert_eq!(delivery_statuses(&fx, pending_at).await.len(), 2);
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_delivery_attempts")
        .fetch_one(fx.pool())
        .await
        .unwrap();
    assert_eq!(
        attempts, 2,
        "the purged deliveries' attempts went with them"
    );
}

async fn deliveries_of(fx: &Fixture, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(fx.pool())
        .await
        .unwrap()
}

/// `*` is every identity event but the webhooks' own: N catch-all webhooks
/// registered and changed one after another queue no delivery of each
/// other's events (200 of them queued 19,900 before), only one per webhook
/// and later event: linear in N.
#[tokio::test(flavor = "multi_thread")]
async fn catch_all_webhooks_are_not_sent_each_others_registrations() {
    const N: usize = 20;
    let fx = fixture(|_| {}).await;
    let receiver = Receiver::start(vec![], Reply::Status(204)).await;
    for index in 0..N {
        let (webhook_id, _) = register(&fx, &receiver.url, &["*"]).await;
        let describe = WebhookCommand::Update {
            url: None,
            event_types: None,
            description: Some(WebhookDescription::parse(&format!("hook {index}")).unwrap()),
            enabled: None,
        };
        execute(&fx, webhook_id, describe).await;
    }
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let user_registered = UserEvent::REGISTERED.name();
    // Published after every webhook event: once each webhook has it, the
    // consumer (one, in order) has handled them all.
    registrations(&fx, 1).await;
    eventually(
        TIMEOUT,
        "the user's registration queued for every webhook",
        || async { (deliveries_of(&fx, user_registered).await == N as i64).then_some(()) },
    )
    .await;
    let queued: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, count(*) FROM webhook_deliveries GROUP BY event_type ORDER BY 1",
    )
    .fetch_all(fx.pool())
    .await
    .unwrap();
    assert_eq!(
        queued,
        [(user_registered.to_owned(), N as i64)],
        "one delivery per webhook, none of the webhooks' own events"
    );
}

/// A webhook that names `webhook.*` is sent the other webhooks' changes,
/// their secrets' ids only: never a secret.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_naming_webhook_events_is_sent_them_without_secrets() {
    let fx = fixture(|_| {}).await;
    let watcher = Receiver::start(vec![], Reply::Status(204)).await;
    let other = Receiver::start(vec![], Reply::Status(204)).await;
    let (_, watcher_secret) = register(&fx, &watcher.url, &["webhook.*"]).await;
    let (webhook_id, first) = register(&fx, &other.url, &["*"]).await;
    let second_id = Uuid::new_v4();
    let second = SigningSecret::generate();
    SecretStore::new(fx.pool().clone())
        .store(second_id, webhook_id, &second)
        .await
        .unwrap();
    let rotate = WebhookCommand::RotateSecret {
        secret_id: second_id,
        previous_valid_until: Utc::now() + TimeDelta::hours(1),
    };
    execute(&fx, webhook_id, rotate).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let published: BTreeSet<String> = fx
        .forward()
        .await
        .into_iter()
        .filter(|e| e.aggregate_id == webhook_id.to_string())
        .map(|e| e.event_id.to_string())
        .collect();
    assert_eq!(published.len(), 2, "registered and rotated");
    watcher.wait_for(&published, TIMEOUT).await;
    for delivery in watcher.received() {
        delivery.verify(&watcher_secret).unwrap();
        let body = String::from_utf8(delivery.body.clone()).unwrap();
        for secret in [&first, &second, &watcher_secret] {
            let key = &secret.expose()["whsec_".len()..];
            assert!(!body.contains(key), "a secret in {body}");
        }
    }
    assert!(other.received().is_empty(), "{:?}", other.received());
}
