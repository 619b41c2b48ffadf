//! A webhook on every user event, with a receiver of the test's own: what
//! the outage and kill tests count deliveries with.

use std::sync::{Arc, Mutex};

use domain::{UserEvent, WebhookEvent};
use infra::testing::TestDatabase;
use serde_json::{json, Value};

/// The `webhook-id` (the event id) of every request the receiver got.
pub type Received = Arc<Mutex<Vec<String>>>;

/// An HTTP server of the test's own recording the `webhook-id` of every
/// request; answers 204. Returns the URL to register.
pub async fn start_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let state = received.clone();
    let server = actix_web::HttpServer::new(move || {
        let state = state.clone();
        actix_web::App::new().default_service(actix_web::web::to(
            move |req: actix_web::HttpRequest| {
                let state = state.clone();
                async move {
                    let id = req
                        .headers()
                        .get("webhook-id")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    state.lock().unwrap().push(id);
                    actix_web::HttpResponse::NoContent().finish()
                }
            },
        ))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind receiver");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), received)
}

/// Registers a webhook on every user event to `url` through the api at
/// `address`; returns its id and where its registration stands in
/// publishing order (`(transaction_id, global_position)`): it receives the
/// events after that.
pub async fn register_user_events_webhook(
    client: &reqwest::Client,
    address: &str,
    token: &str,
    url: &str,
    db: &TestDatabase,
) -> (String, (i64, i64)) {
    let pattern = format!("{}.*", UserEvent::REGISTERED.aggregate_type());
    let response = client
        .post(format!("{address}/v1/webhooks"))
        .bearer_auth(token)
        .json(&json!({"url": url, "event_types": [pattern], "description": "user events"}))
        .send()
        .await
        .expect("register webhook");
    assert_eq!(response.status(), 201, "register the webhook");
    let webhook: Value = response.json().await.unwrap();
    let webhook_id = webhook["id"].as_str().expect("the webhook's id").to_owned();
    let from: (i64, i64) = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         WHERE aggregate_id = $1 AND event_type = $2",
    )
    .bind(&webhook_id)
    .bind(WebhookEvent::REGISTERED.name())
    .fetch_one(&db.pool)
    .await
    .expect("the webhook's registration is in the event store");
    (webhook_id, from)
}
