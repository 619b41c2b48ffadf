//! `/v1/webhooks`: registration returns the secret once and keeps it out of
//! the event store; reading, changing, rotating and deleting; every input
//! rule a named problem; internal addresses and plain http refused unless
//! allowed; `webhooks:write` needed by every route.

use crate::support::{assert_problem, count_events, spawn_app, spawn_app_with, TestApp, SHORT};
use domain::{UserEvent, WebhookEvent};
use reqwest::Method;
use serde_json::{json, Value};

/// Receivers in tests listen on 127.0.0.1 over plain http.
pub const ALLOW_LOCAL: [&str; 2] = [
    "--webhooks-allow-http=true",
    "--webhooks-allow-private-networks=true",
];

async fn register(app: &TestApp, body: Value) -> Value {
    let response = app.post_json("/v1/webhooks", &body).await;
    assert_eq!(response.status(), 201, "register webhook");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/webhooks/{}", created["id"].as_str().unwrap())
    );
    created
}

fn hook(url: &str) -> Value {
    json!({"url": url, "event_types": ["user.*", "session.revoked"], "description": "CRM"})
}

async fn stored_text_containing(app: &TestApp, needle: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%' \
            OR metadata::text LIKE '%' || $1 || '%'",
    )
    .bind(needle)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_webhook_is_registered_read_changed_rotated_and_deleted() {
    let app = spawn_app_with(&ALLOW_LOCAL).await;
    let created = register(&app, hook("http://127.0.0.1:9/in")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        stored_text_containing(&app, &secret["whsec_".len()..]).await,
        0
    );

    let read: Value = app
        .get(&format!("/v1/webhooks/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        read,
        json!({"id": id, "url": "http://127.0.0.1:9/in",
               "event_types": ["session.revoked", "user.*"], "description": "CRM", "enabled": true})
    );
    let list: Value = app.get("/v1/webhooks").await.json().await.unwrap();
    assert_eq!(list["items"], json!([read]));

    let path = format!("/v1/webhooks/{id}");
    let changed = app
        .patch_json(&path, &json!({"enabled": false, "event_types": ["*"]}))
        .await;
    assert_eq!(changed.status(), 200);
    let read: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(
        (read["enabled"].clone(), read["event_types"].clone()),
        (json!(false), json!(["*"]))
    );

    let rotated = app.post_empty(&format!("{path}/rotate-secret")).await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert_eq!(
        stored_text_containing(&app, &new_secret["whsec_".len()..]).await,
        0
    );

    let deleted = app
        .send(Method::DELETE, &path, &app.admin_token, None)
        .await;
    assert_eq!(deleted.status(), 200);
    assert_problem(app.get(&path).await, 404, "not-found", None).await;
    assert_problem(
        app.send(Method::DELETE, &path, &app.admin_token, None)
            .await,
        404,
        "not-found",
        None,
    )
    .await;
    let list: Value = app.get("/v1/webhooks").await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));

    for (event_type, count) in [
        (WebhookEvent::REGISTERED, 1),
        (WebhookEvent::DISABLED, 1),
        (WebhookEvent::EVENT_TYPES_CHANGED, 1),
        (WebhookEvent::SECRET_ROTATED, 1),
        (WebhookEvent::DELETED, 1),
    ] {
        assert_eq!(
            count_events(&app.db, event_type.name()).await,
            count,
            "{event_type}"
        );
    }
    let history: Value = app
        .get(&format!("/v1/audit/webhook/{id}/history"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["items"].as_array().unwrap().len(), 5, "{history}");
}

#[tokio::test]
async fn every_input_rule_is_a_problem_naming_its_field_and_writes_nothing() {
    let app = spawn_app_with(&ALLOW_LOCAL).await;
    let url = "http://127.0.0.1:9/in";
    let too_many: Vec<&str> = domain::all_event_types()
        .take(21)
        .map(|event_type| event_type.name())
        .collect();
    let cases = [
        (json!({"url": "not a url", "event_types": ["*"]}), "url"),
        (
            json!({"url": "ftp://example.com/", "event_types": ["*"]}),
            "url",
        ),
        (
            json!({"url": "http://u:p@127.0.0.1/", "event_types": ["*"]}),
            "url",
        ),
        (
            json!({"url": url, "event_types": ["user.exploded"]}),
            "event_types[0]",
        ),
        (
            json!({"url": url, "event_types": ["*", "order.*"]}),
            "event_types[1]",
        ),
        (json!({"url": url, "event_types": []}), "event_types"),
        (json!({"url": url, "event_types": too_many}), "event_types"),
        (
            json!({"url": url, "event_types": ["*"], "description": "x".repeat(501)}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let response = app.post_json("/v1/webhooks", &body).await;
        assert_problem(response, 422, "validation-failed", Some(field)).await;
    }
    let unknown = json!({"url": url, "event_types": ["*"], "secret": "mine"});
    let response = app.post_json("/v1/webhooks", &unknown).await;
    assert_problem(response, 400, "bad-request", Some("secret")).await;
    assert_eq!(app.event_count().await, app.baseline_events);

    let id = register(&app, hook(url)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/webhooks/{id}");
    let response = app
        .patch_json(&path, &json!({"url": "nope", "event_types": ["x.y"]}))
        .await;
    let problem = assert_problem(response, 422, "validation-failed", Some("url")).await;
    assert_eq!(problem["errors"][1]["field"], "event_types[0]", "{problem}");
    let response = app.patch_json(&path, &json!({"enabled": "yes"})).await;
    assert_problem(response, 400, "bad-request", Some("enabled")).await;
    let response = app.patch_json(&path, &json!({})).await;
    assert_problem(response, 422, "validation-failed", Some("enabled")).await;
}

#[tokio::test]
async fn internal_addresses_and_plain_http_are_refused_at_registration() {
    let app = spawn_app().await;
    for url in [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/",
        "https://192.168.0.10:8443/",
        "https://100.64.0.1/",
        "https://[::ffff:127.0.0.1]/",
        "https://localhost/",
        "http://93.184.216.34/",
    ] {
        let body = json!({"url": url, "event_types": ["*"]});
        let response = app.post_json("/v1/webhooks", &body).await;
        assert_problem(response, 422, "validation-failed", Some("url")).await;
    }
    assert_eq!(app.event_count().await, app.baseline_events);
    let secrets: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_secrets")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(secrets, 0, "no secret is kept for a refused registration");
}

#[tokio::test]
async fn a_changed_url_is_checked_like_a_new_one() {
    let app = spawn_app_with(&["--webhooks-allow-http=true"]).await;
    let id = register(&app, hook("http://93.184.216.34/in")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .patch_json(
            &format!("/v1/webhooks/{id}"),
            &json!({"url": "http://169.254.169.254/"}),
        )
        .await;
    assert_problem(response, 422, "validation-failed", Some("url")).await;
}

#[tokio::test]
async fn every_route_needs_webhooks_write() {
    let app = spawn_app_with(&ALLOW_LOCAL).await;
    let id = register(&app, hook("http://127.0.0.1:9/in")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let all_but: Vec<&str> = domain::Permission::ALL
        .iter()
        .map(|p| p.as_str())
        .filter(|p| *p != "webhooks:write")
        .collect();
    let (_, token, _) = app.user_holding("almost", &all_but).await;
    let delivery = uuid::Uuid::new_v4();
    let routes = [
        (
            Method::POST,
            "/v1/webhooks".to_owned(),
            Some(hook("http://127.0.0.1:9/x")),
        ),
        (Method::GET, "/v1/webhooks".to_owned(), None),
        (Method::GET, format!("/v1/webhooks/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/webhooks/{id}"),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, format!("/v1/webhooks/{id}"), None),
        (
            Method::POST,
            format!("/v1/webhooks/{id}/rotate-secret"),
            None,
        ),
        (Method::GET, format!("/v1/webhooks/{id}/deliveries"), None),
        (
            Method::POST,
            format!("/v1/webhooks/{id}/deliveries/{delivery}/redeliver"),
            None,
        ),
    ];
    let before = app.event_count().await;
    for (method, path, body) in routes {
        let response = app.send(method.clone(), &path, &token, body).await;
        let problem = assert_problem(response, 403, "forbidden", None).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("webhooks:write"),
            "{method} {path}: {problem}"
        );
    }
    assert_eq!(app.event_count().await, before);
}

/// Choosing where events go is reading them: registering a webhook, or
/// changing one, also needs `audit:read`.
#[tokio::test]
async fn registering_or_changing_a_webhook_needs_audit_read_too() {
    let app = spawn_app_with(&ALLOW_LOCAL).await;
    let id = register(&app, hook("http://127.0.0.1:9/in")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let all_but: Vec<&str> = domain::Permission::ALL
        .iter()
        .map(|p| p.as_str())
        .filter(|p| *p != domain::Permission::AuditRead.as_str())
        .collect();
    let (_, token, _) = app.user_holding("no-audit", &all_but).await;
    let before = app.event_count().await;
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/webhooks".to_owned(),
            hook("http://127.0.0.1:9/x"),
        ),
        (
            Method::PATCH,
            format!("/v1/webhooks/{id}"),
            json!({"event_types": ["*"]}),
        ),
    ] {
        let response = app.send(method.clone(), &path, &token, Some(body)).await;
        let problem = assert_problem(response, 403, "forbidden", None).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("audit:read"),
            "{method} {path}: {problem}"
        );
    }
    assert_eq!(app.event_count().await, before);
}

/// `WEBHOOKS_MAX` holds across api processes: of 12 concurrent
/// registrations on two of them with room for 3, exactly 3 are registered;
/// each other one is a 409 naming the limit that leaves nothing behind (no
/// event, no secret). A disabled webhook keeps its place; a deleted one
/// frees it.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_registrations_at_the_limit_leave_exactly_the_limit() {
    const MAX: usize = 3;
    const RACERS: usize = 12;
    let limit = format!("--webhooks-max={MAX}");
    let args = [ALLOW_LOCAL[0], ALLOW_LOCAL[1], limit.as_str()];
    let app = spawn_app_with(&args).await;
    let other = api::startup::Application::build(crate::support::api_settings(
        &app.db,
        &app.topology,
        &args,
    ))
    .await
    .expect("build a second api");
    let other_address = format!("http://127.0.0.1:{}", other.port());
    tokio::spawn(other.run_until_stopped());
    let before = app.event_count().await;

    let racers = (0..RACERS).map(|n| {
        let address = if n % 2 == 0 {
            &app.address
        } else {
            &other_address
        };
        app.client
            .post(format!("{address}/v1/webhooks"))
            .bearer_auth(&app.admin_token)
            .json(&hook(&format!("http://127.0.0.1:9/in/{n}")))
            .send()
    });
    let responses: Vec<reqwest::Response> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(|response| response.expect("request"))
        .collect();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        MAX,
        "{statuses:?}"
    );
    for response in responses.into_iter().filter(|r| r.status() != 201) {
        let problem = assert_problem(response, 409, "webhook-limit-reached", None).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("at most {MAX} webhooks")),
            "{detail}"
        );
    }
    let live: Value = app.get("/v1/webhooks").await.json().await.unwrap();
    let live = live["items"].as_array().unwrap().clone();
    assert_eq!(live.len(), MAX);
    assert_eq!(
        count_events(&app.db, WebhookEvent::REGISTERED.name()).await,
        MAX as i64
    );
    assert_eq!(app.event_count().await, before + MAX as i64);
    let secrets: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_secrets")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        secrets, MAX as i64,
        "a refused registration keeps no secret"
    );

    let first = format!("/v1/webhooks/{}", live[0]["id"].as_str().unwrap());
    let disabled = app.patch_json(&first, &json!({"enabled": false})).await;
    assert_eq!(disabled.status(), 200);
    let response = app
        .post_json("/v1/webhooks", &hook("http://127.0.0.1:9/x"))
        .await;
    assert_problem(response, 409, "webhook-limit-reached", None).await;
    let deleted = app
        .send(Method::DELETE, &first, &app.admin_token, None)
        .await;
    assert_eq!(deleted.status(), 200);
    register(&app, hook("http://127.0.0.1:9/x")).await;
    let response = app
        .post_json("/v1/webhooks", &hook("http://127.0.0.1:9/y"))
        .await;
    assert_problem(response, 409, "webhook-limit-reached", None).await;
}

/// A receiver answering `status` (changeable), recording each `webhook-id`.
struct Receiver {
    url: String,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    ids: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(status: u16) -> Self {
        use std::sync::atomic::{AtomicU16, Ordering};
        use std::sync::{Arc, Mutex};
        let answer = Arc::new(AtomicU16::new(status));
        let ids: Arc<Mutex<Vec<String>>> = Arc::default();
        let (state, seen) = (answer.clone(), ids.clone());
        let server = actix_web::HttpServer::new(move || {
            let (state, seen) = (state.clone(), seen.clone());
            actix_web::App::new().default_service(actix_web::web::to(
                move |req: actix_web::HttpRequest| {
                    let (state, seen) = (state.clone(), seen.clone());
                    async move {
                        let id = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        seen.lock().unwrap().push(id);
                        let status = state.load(Ordering::SeqCst);
                        actix_web::HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(status).unwrap(),
                        )
                        .finish()
                    }
                },
            ))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self {
            url: format!("http://127.0.0.1:{port}/in"),
            status: answer,
            ids,
        }
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let response = app.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_dead_delivery_is_listed_with_its_attempts_and_can_be_redelivered() {
    let worker_args = [
        ALLOW_LOCAL[0],
        ALLOW_LOCAL[1],
        "--webhook-max-attempts=1",
        "--webhook-poll-interval-ms=50",
    ];
    let app = crate::support::spawn_app_with_worker(&ALLOW_LOCAL, &worker_args).await;
    let receiver = Receiver::start(500).await;
    let body = json!({"url": receiver.url, "event_types": [UserEvent::REGISTERED.name()]});
    let id = register(&app, body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (user_id, _) = app.register("ada@example.com", "Ada").await;

    let dead = infra::testing::eventually(SHORT, "the delivery dead", || async {
        let items = deliveries(&app, &id).await;
        (items.len() == 1 && items[0]["status"] == "dead").then(|| items[0].clone())
    })
    .await;
    let event_id: String = sqlx::query_scalar(
        "SELECT event_id::text FROM events WHERE aggregate_id = $1 AND event_type = $2",
    )
    .bind(&user_id)
    .bind(UserEvent::REGISTERED.name())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(dead["event_id"], event_id.as_str());
    assert_eq!(dead["event_type"], UserEvent::REGISTERED.name());
    assert_eq!(dead["failures"], 1);
    assert_eq!(dead["next_attempt_at"], Value::Null);
    let attempts = dead["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["outcome"], "dead");
    assert!(attempts[0]["duration_ms"].as_i64().unwrap() >= 0);

    receiver
        .status
        .store(204, std::sync::atomic::Ordering::SeqCst);
    let delivery_id = dead["delivery_id"].as_str().unwrap();
    let path = format!("/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver");
    let response = app.post_empty(&path).await;
    assert_eq!(response.status(), 202);
    let delivered = infra::testing::eventually(SHORT, "redelivered", || async {
        let items = deliveries(&app, &id).await;
        (items[0]["status"] == "delivered").then(|| items[0].clone())
    })
    .await;
    let outcomes: Vec<&Value> = delivered["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["outcome"])
        .collect();
    assert_eq!(outcomes, [&json!("dead"), &json!("delivered")]);
    assert_eq!(receiver.ids(), [event_id.clone(), event_id]);

    let unknown = format!(
        "/v1/webhooks/{id}/deliveries/{}/redeliver",
        uuid::Uuid::new_v4()
    );
    assert_problem(app.post_empty(&unknown).await, 404, "not-found", None).await;
    let elsewhere = format!("/v1/webhooks/{}/deliveries", uuid::Uuid::new_v4());
    assert_problem(app.get(&elsewhere).await, 404, "not-found", None).await;
    let bad_limit = format!("/v1/webhooks/{id}/deliveries?limit=0");
    assert_problem(app.get(&bad_limit).await, 400, "bad-request", Some("limit")).await;
}

/// An installation from before `webhooks:write`: its `admin` role lacks it
/// (so nobody holds every permission) until `api admin bootstrap` runs again.
#[tokio::test]
async fn bootstrapping_again_gives_an_older_admin_role_webhooks_write() {
    use domain::{Permission, Role, RoleCommand};
    let db = infra::testing::TestDatabase::create().await;
    crate::support::bootstrap_admin(&db).await;
    let role_id: uuid::Uuid = sqlx::query_scalar(
        "SELECT owner_id::uuid FROM unique_claims WHERE scope = $1 AND value = 'admin'",
    )
    .bind(domain::ClaimScope::ROLE_NAME.as_str())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let roles = infra::commands::CommandBus::<Role>::new(db.pool.clone());
    let older = Permission::ALL
        .iter()
        .copied()
        .filter(|p| *p != Permission::WebhooksWrite)
        .collect();
    let metadata = infra::testing::request_metadata(None, "upgrade-test");
    roles
        .execute(
            &role_id.to_string(),
            RoleCommand::SetPermissions { permissions: older },
            &metadata,
        )
        .await
        .unwrap();
    let grants = |role: Role| role.grants(Permission::WebhooksWrite);
    assert!(!grants(roles.load(&role_id.to_string()).await.unwrap()));

    crate::support::bootstrap_admin(&db).await;
    assert!(grants(roles.load(&role_id.to_string()).await.unwrap()));
}
