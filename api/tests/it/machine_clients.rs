//! Machine clients: service accounts, their API keys used as bearer
//! credentials and as the client secret of the client-credentials grant,
//! and the rules of who may give them what.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{self, assert_problem, spawn_app, spawn_app_with, TestApp};

/// A service account holding one role that grants `permissions`, with a
/// first key of its whole power: `(account id, role id, key id, key)`.
async fn account_holding(app: &TestApp, name: &str, permissions: &[&str]) -> Account {
    let role = app.create_role(&format!("{name}-role"), permissions).await;
    let id = create_account(app, &app.admin_token, name).await;
    let assigned = app
        .send(
            Method::PUT,
            &format!("/v1/service-accounts/{id}/roles/{role}"),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(assigned.status(), 200, "assign {role}");
    let (key_id, key) = issue_key(app, &app.admin_token, &id, json!({})).await;
    Account {
        id,
        role,
        key_id,
        key,
    }
}

struct Account {
    id: String,
    role: String,
    key_id: String,
    key: String,
}

async fn create_account(app: &TestApp, token: &str, name: &str) -> String {
    let response = app
        .send(
            Method::POST,
            "/v1/service-accounts",
            token,
            Some(json!({"name": name, "description": "test"})),
        )
        .await;
    assert_eq!(response.status(), 201, "create {name}");
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn issue_key(app: &TestApp, token: &str, account: &str, body: Value) -> (String, String) {
    let response = app
        .send(
            Method::POST,
            &format!("/v1/service-accounts/{account}/keys"),
            token,
            Some(body),
        )
        .await;
    assert_eq!(response.status(), 201, "issue a key");
    let body: Value = response.json().await.unwrap();
    key_of(&body)
}

/// A token request's form fields.
type Form<'a> = Vec<(&'a str, &'a str)>;

/// `key` with its last digit changed: a typo, which the checksum catches.
fn wrong_checksum(key: &str) -> String {
    let last = if key.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &key[..key.len() - 1])
}

fn key_of(body: &Value) -> (String, String) {
    (
        body["key_id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

async fn status_with(app: &TestApp, address: &str, credential: &str) -> u16 {
    app.client
        .get(format!("{address}/v1/users"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `POST /v1/oauth/token` with form fields.
async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url("/v1/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn client_credentials(app: &TestApp, key_id: &str, key: &str) -> String {
    let response = token_request(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", key_id),
            ("client_secret", key),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_key_acts_as_its_account_and_every_event_names_both() {
    let app = spawn_app().await;
    let machine = account_holding(&app, "ci", &["users:read", "users:write", "audit:read"]).await;
    assert!(machine.key.starts_with("idsk_") && machine.key.len() == 111);

    assert_eq!(status_with(&app, &app.address, &machine.key).await, 200);
    let created = app
        .send(
            Method::POST,
            "/v1/users",
            &machine.key,
            Some(json!({"email": "made@example.com", "password": support::GOOD_PASSWORD, "display_name": "Made"})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let position = created.json::<Value>().await.unwrap()["position"]
        .as_i64()
        .unwrap();
    // More than the account holds is refused, naming the permission.
    let role = app
        .send(
            Method::POST,
            "/v1/roles",
            &machine.key,
            Some(json!({"name": "x", "permissions": []})),
        )
        .await;
    assert_problem(role, 403, "forbidden", None).await;

    for filter in [
        format!("api_key_id={}", machine.key_id),
        format!("actor_id={}", machine.id),
    ] {
        let page: Value = app
            .get(&format!(
                "/v1/audit/events?min_position={position}&event_type=user.registered&{filter}"
            ))
            .await
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{filter}: {page}");
        assert_eq!(items[0]["metadata"]["actor_id"], machine.id.as_str());
        assert_eq!(items[0]["metadata"]["api_key_id"], machine.key_id.as_str());
    }
    // A person's events name no key.
    let by_admin: Value = app
        .get(&format!(
            "/v1/audit/events?min_position={position}&actor_id={}&limit=1",
            app.admin_id
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(by_admin["items"][0]["metadata"].get("api_key_id").is_none());

    // The key's last use shows without an event per request.
    let events = app.event_count().await;
    for _ in 0..3 {
        assert_eq!(status_with(&app, &app.address, &machine.key).await, 200);
    }
    assert_eq!(app.event_count().await, events);
    let detail = infra::testing::eventually(support::SHORT, "last use recorded", || async {
        let detail: Value = app
            .get(&format!("/v1/service-accounts/{}", machine.id))
            .await
            .json()
            .await
            .ok()?;
        detail["keys"][0]["last_used_at"]
            .is_string()
            .then_some(detail)
    })
    .await;
    assert_eq!(detail["keys"][0]["last_used_from"], "127.0.0.1");
    assert_eq!(detail["roles"], json!(["ci-role"]));
    assert!(detail["keys"][0].get("key").is_none() && !detail.to_string().contains("idsk_"));

    // A machine has no session of its own to show or end.
    for (method, path) in [
        (Method::GET, "/v1/users/me"),
        (Method::GET, "/v1/auth/session"),
        (Method::POST, "/v1/auth/logout"),
    ] {
        let response = app.send(method, path, &machine.key, None).await;
        assert_problem(response, 404, "not-found", None).await;
    }

    // A key that is not one answers exactly as a bad token does.
    let forged = wrong_checksum(&machine.key);
    for bad in [forged.as_str(), "idsk_short", "not-a-jwt"] {
        let response = app.get_as("/v1/users", bad).await;
        assert_eq!(response.status(), 401, "{bad}");
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
}

#[tokio::test]
async fn a_revoked_key_or_a_disabled_account_is_refused_at_once_by_every_process() {
    let app = spawn_app().await;
    let machine = account_holding(&app, "sync", &["users:read"]).await;
    let settings = support::api_settings(&app.db, &app.topology, &["--relay-enabled=false"]);
    let second = api::startup::Application::build(settings).await.unwrap();
    let other = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());
    let token = client_credentials(&app, &machine.key_id, &machine.key).await;
    let (spare_id, spare) = issue_key(&app, &app.admin_token, &machine.id, json!({})).await;
    for address in [&app.address, &other] {
        for credential in [&machine.key, &token, &spare] {
            assert_eq!(status_with(&app, address, credential).await, 200);
        }
    }

    let disabled = app
        .patch_json(
            &format!("/v1/service-accounts/{}", machine.id),
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(disabled.status(), 200);
    for address in [&app.address, &other] {
        for credential in [&machine.key, &token, &spare] {
            assert_eq!(status_with(&app, address, credential).await, 401);
        }
    }
    let enabled = app
        .patch_json(
            &format!("/v1/service-accounts/{}", machine.id),
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(enabled.status(), 200);
    assert_eq!(status_with(&app, &other, &token).await, 200);

    let path = format!(
        "/v1/service-accounts/{}/keys/{}",
        machine.id, machine.key_id
    );
    let revoked = app
        .send(Method::DELETE, &path, &app.admin_token, None)
        .await;
    assert_eq!(revoked.status(), 200);
    for address in [&app.address, &other] {
        // The key, and the token granted to it.
        assert_eq!(status_with(&app, address, &machine.key).await, 401);
        assert_eq!(status_with(&app, address, &token).await, 401);
        assert_eq!(status_with(&app, address, &spare).await, 200);
    }
    let again = app
        .send(Method::DELETE, &path, &app.admin_token, None)
        .await;
    assert_problem(again, 404, "not-found", None).await;
    assert_eq!(
        token_request(
            &app,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &machine.key_id),
                ("client_secret", &machine.key),
            ]
        )
        .await
        .status(),
        401
    );

    // An expired key, and a key asked to outlive the policy.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, short) = issue_key(
        &app,
        &app.admin_token,
        &machine.id,
        json!({"expires_at": soon}),
    )
    .await;
    assert_eq!(status_with(&app, &other, &short).await, 200);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(status_with(&app, &other, &short).await, 401);
    let far = (chrono::Utc::now() + chrono::Duration::days(91)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    for expires_at in [far, past] {
        let response = app
            .post_json(
                &format!("/v1/service-accounts/{}/keys", machine.id),
                &json!({"expires_at": expires_at}),
            )
            .await;
        assert_problem(response, 422, "validation-failed", Some("expires_at")).await;
    }
    assert_eq!(
        status_with(&app, &app.address, &spare).await,
        200,
        "{spare_id}"
    );
}

#[tokio::test]
async fn a_rotated_key_works_beside_its_successor_until_the_overlap_ends() {
    let app = spawn_app().await;
    let machine = account_holding(&app, "deployer", &["users:read"]).await;
    let path = format!(
        "/v1/service-accounts/{}/keys/{}/rotate",
        machine.id, machine.key_id
    );
    let rotated = app.post_json(&path, &json!({"overlap_seconds": 2})).await;
    assert_eq!(rotated.status(), 201);
    let body: Value = rotated.json().await.unwrap();
    let (next_id, next) = key_of(&body);
    assert_eq!(body["scope"], json!(["users:read"]));
    assert_ne!(next, machine.key);
    assert_eq!(status_with(&app, &app.address, &machine.key).await, 200);
    assert_eq!(status_with(&app, &app.address, &next).await, 200);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(status_with(&app, &app.address, &machine.key).await, 401);
    assert_eq!(status_with(&app, &app.address, &next).await, 200);

    // A replaced key is rotated once; an overlap beyond a week is refused.
    let again = app.post_json(&path, &json!({})).await;
    assert_problem(again, 404, "not-found", None).await;
    let next_path = format!("/v1/service-accounts/{}/keys/{next_id}/rotate", machine.id);
    let long = app
        .post_json(&next_path, &json!({"overlap_seconds": 604_801}))
        .await;
    assert_problem(long, 422, "validation-failed", Some("overlap_seconds")).await;
    let detail: Value = app
        .get(&format!("/v1/service-accounts/{}", machine.id))
        .await
        .json()
        .await
        .unwrap();
    let old = detail["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["key_id"] == machine.key_id.as_str())
        .unwrap();
    assert_eq!(old["replaced_by"], next_id.as_str());
}

#[tokio::test]
async fn nobody_gives_an_account_or_a_key_a_permission_they_lack() {
    let app = spawn_app().await;
    // Holds service_accounts:write but not users:write.
    let (_, writer, _) = app
        .user_holding(
            "keeper",
            &[
                "service_accounts:write",
                "service_accounts:read",
                "users:read",
            ],
        )
        .await;
    let own = create_account(&app, &writer, "own").await;
    let reader_role = app.create_role("reader", &["users:read"]).await;
    let writer_role = app.create_role("writer", &["users:write"]).await;
    let assign = |account: &str, role: &str| format!("/v1/service-accounts/{account}/roles/{role}");

    // A role granting what the caller lacks.
    let wider = app
        .send(Method::PUT, &assign(&own, &writer_role), &writer, None)
        .await;
    let problem = assert_problem(wider, 403, "forbidden", None).await;
    assert!(problem["detail"].as_str().unwrap().contains("users:write"));
    let within = app
        .send(Method::PUT, &assign(&own, &reader_role), &writer, None)
        .await;
    assert_eq!(within.status(), 200);

    // A key wider than the account, or naming an unknown permission.
    let keys = format!("/v1/service-accounts/{own}/keys");
    for (scope, field) in [
        (json!(["users:write"]), "scope"),
        (json!(["users:read", "users:fly"]), "scope[1]"),
    ] {
        let response = app
            .send(Method::POST, &keys, &writer, Some(json!({"scope": scope})))
            .await;
        assert_problem(response, 422, "validation-failed", Some(field)).await;
    }
    let (_, narrow) = issue_key(&app, &writer, &own, json!({"scope": ["users:read"]})).await;
    assert_eq!(status_with(&app, &app.address, &narrow).await, 200);

    // An account holding more than the caller: no key, no change, no erasure.
    let strong = account_holding(&app, "strong", &["users:read", "users:write"]).await;
    let strong_keys = format!("/v1/service-accounts/{}/keys", strong.id);
    let key_path = format!("{strong_keys}/{}", strong.key_id);
    let attempts = [
        (
            Method::POST,
            strong_keys.clone(),
            Some(json!({"scope": ["users:read"]})),
        ),
        (Method::POST, format!("{key_path}/rotate"), None),
        (Method::DELETE, key_path.clone(), None),
        (
            Method::PATCH,
            format!("/v1/service-accounts/{}", strong.id),
            Some(json!({"enabled": false})),
        ),
        (
            Method::POST,
            format!("/v1/service-accounts/{}/erase", strong.id),
            None,
        ),
        (Method::DELETE, assign(&strong.id, &strong.role), None),
    ];
    let events = app.event_count().await;
    for (method, path, body) in attempts {
        let response = app.send(method.clone(), &path, &writer, body).await;
        assert_problem(response, 403, "forbidden", None).await;
    }
    assert_eq!(app.event_count().await, events, "nothing half-written");
    assert_eq!(status_with(&app, &app.address, &strong.key).await, 200);

    // A key with service_accounts:write acts within its own scope only.
    let manager = account_holding(&app, "manager", &["service_accounts:write", "users:read"]).await;
    let widened = app
        .send(
            Method::PUT,
            &assign(&manager.id, &writer_role),
            &manager.key,
            None,
        )
        .await;
    assert_problem(widened, 403, "forbidden", None).await;

    // A service account holding every permission does not keep the last
    // administrator: only an active user does.
    let admin_role: String =
        sqlx::query_scalar("SELECT role_id::text FROM role_grants WHERE name = 'admin'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let all_powerful = create_account(&app, &app.admin_token, "root").await;
    let granted = app
        .send(
            Method::PUT,
            &assign(&all_powerful, &admin_role),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(granted.status(), 200);
    let unassign = app
        .send(
            Method::DELETE,
            &format!("/v1/users/{}/roles/{admin_role}", app.admin_id),
            &app.admin_token,
            None,
        )
        .await;
    assert_problem(unassign, 409, "last-administrator", None).await;

    // Without service_accounts:write (read only), nothing changes.
    let (_, viewer, _) = app
        .user_holding("viewer", &["service_accounts:read", "users:read"])
        .await;
    let listed = app.get_as("/v1/service-accounts", &viewer).await;
    assert_eq!(listed.status(), 200);
    let created = app
        .send(
            Method::POST,
            "/v1/service-accounts",
            &viewer,
            Some(json!({"name": "nope"})),
        )
        .await;
    assert_problem(created, 403, "forbidden", None).await;
}

#[tokio::test]
async fn bad_input_is_named_and_writes_nothing() {
    let app = spawn_app().await;
    let id = create_account(&app, &app.admin_token, "input").await;
    let events = app.event_count().await;
    let account = format!("/v1/service-accounts/{id}");
    let cases = [
        (
            Method::POST,
            "/v1/service-accounts".to_owned(),
            json!({"name": "a b"}),
            422,
            "name",
        ),
        (
            Method::POST,
            "/v1/service-accounts".to_owned(),
            json!({"name": "x", "description": "\u{7}"}),
            422,
            "description",
        ),
        (
            Method::POST,
            "/v1/service-accounts".to_owned(),
            json!({}),
            400,
            "name",
        ),
        (Method::PATCH, account.clone(), json!({}), 422, "name"),
        (
            Method::PATCH,
            account.clone(),
            json!({"name": ""}),
            422,
            "name",
        ),
        (
            Method::POST,
            format!("{account}/keys"),
            json!({"scope": "users:read"}),
            400,
            "scope",
        ),
        (
            Method::POST,
            format!("{account}/keys"),
            json!({"expires_at": "tomorrow"}),
            400,
            "expires_at",
        ),
        (
            Method::POST,
            format!("{account}/keys"),
            json!({"description": "x".repeat(501)}),
            422,
            "description",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let response = app.send(method, &path, &app.admin_token, Some(body)).await;
        let kind = if status == 400 {
            "bad-request"
        } else {
            "validation-failed"
        };
        assert_problem(response, status, kind, Some(field)).await;
    }
    assert_eq!(app.event_count().await, events);
    for path in [
        "/v1/service-accounts/not-a-uuid".to_owned(),
        format!("/v1/service-accounts/{}", uuid::Uuid::now_v7()),
    ] {
        assert_problem(app.get(&path).await, 404, "not-found", None).await;
    }
    let unknown_role = app
        .send(
            Method::PUT,
            &format!("{account}/roles/{}", uuid::Uuid::now_v7()),
            &app.admin_token,
            None,
        )
        .await;
    assert_problem(unknown_role, 422, "validation-failed", Some("role_id")).await;
}

#[tokio::test]
async fn the_token_endpoint_speaks_rfc_6749() {
    let app = spawn_app().await;
    let machine = account_holding(&app, "grant", &["users:read", "roles:read"]).await;
    let basic = |id: &str, secret: &str| {
        use base64::Engine;
        let encode =
            |part: &str| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            encode(id),
            encode(secret)
        ))
    };

    // HTTP Basic, narrowed to one permission.
    let response = app
        .client
        .post(app.url("/v1/oauth/token"))
        .header(
            "authorization",
            format!("Basic {}", basic(&machine.key_id, &machine.key)),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "users:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let granted: Value = response.json().await.unwrap();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["scope"], "users:read");
    assert!(granted["expires_in"].as_i64().unwrap() > 0);
    let token = granted["access_token"].as_str().unwrap();
    let claims: Value = {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["sub"], machine.id.as_str());
    assert_eq!(claims["client_id"], machine.key_id.as_str());
    assert_eq!(claims["scope"], "users:read");
    assert!(claims.get("sid").is_none());
    assert_eq!(status_with(&app, &app.address, token).await, 200);
    assert_eq!(app.get_as("/v1/roles", token).await.status(), 403);
    assert_eq!(app.get_as("/v1/roles", &machine.key).await.status(), 200);

    // Each refusal in the RFC's shape, on this route only.
    let id = machine.key_id.as_str();
    let key = machine.key.as_str();
    let wrong = wrong_checksum(key);
    let other = account_holding(&app, "other", &["users:read"]).await;
    let cases: Vec<(Form, u16, &str)> = vec![
        (
            vec![
                ("grant_type", "password"),
                ("client_id", id),
                ("client_secret", key),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![("client_id", id), ("client_secret", key)],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", key),
                ("scope", "users:write"),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", key),
                ("scope", "users:read"),
                ("scope", "roles:read"),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", &wrong),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &other.key_id),
                ("client_secret", key),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![("grant_type", "client_credentials"), ("client_id", id)],
            401,
            "invalid_client",
        ),
    ];
    for (form, status, error) in cases {
        let response = token_request(&app, &form).await;
        assert_eq!(response.status(), status, "{form:?}");
        if status == 401 {
            assert!(response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"));
        }
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], error, "{form:?}");
        assert!(body["error_description"].is_string());
    }
    // Two ways of authenticating at once, and a body that is not a form.
    let both = app
        .client
        .post(app.url("/v1/oauth/token"))
        .header("authorization", format!("Basic {}", basic(id, key)))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", key),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    let json_body = app
        .client
        .post(app.url("/v1/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
    assert_eq!(
        json_body.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn wrong_keys_are_counted_for_their_address_and_the_block_covers_right_ones() {
    let app = spawn_app_with(&["--lockout-ip-threshold=3"]).await;
    let machine = account_holding(&app, "guessed", &["users:read"]).await;
    // Well formed, checksum right, never issued.
    let unknown = app::api_key::ApiKey::generate(uuid::Uuid::now_v7())
        .expose()
        .to_owned();
    let wrong_secret = wrong_checksum(&machine.key);
    for guess in [unknown.as_str(), wrong_secret.as_str(), "idsk_x"] {
        assert_eq!(status_with(&app, &app.address, guess).await, 401);
    }
    // The fourth failure is beyond the threshold: refused 429, as is every
    // key from the address while the block lasts, right or wrong.
    assert_eq!(status_with(&app, &app.address, &wrong_secret).await, 429);
    support::address_blocked(&app).await;
    let right = app.get_as("/v1/users", &machine.key).await;
    assert_eq!(right.status(), 429);
    assert!(right.headers().contains_key("retry-after"));
    let grant = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &machine.key_id),
            ("client_secret", &machine.key),
        ],
    )
    .await;
    assert_eq!(grant.status(), 429);
    assert_eq!(
        grant.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
}

#[tokio::test]
async fn an_erased_account_keeps_no_key_and_no_role() {
    let app = spawn_app().await;
    let machine = account_holding(&app, "gone", &["users:read"]).await;
    let token = client_credentials(&app, &machine.key_id, &machine.key).await;
    let erase = format!("/v1/service-accounts/{}/erase", machine.id);
    assert_eq!(app.post_empty(&erase).await.status(), 200);
    assert_eq!(status_with(&app, &app.address, &machine.key).await, 401);
    assert_eq!(status_with(&app, &app.address, &token).await, 401);
    let account = format!("/v1/service-accounts/{}", machine.id);
    assert_problem(app.get(&account).await, 404, "not-found", None).await;
    assert_problem(app.post_empty(&erase).await, 404, "not-found", None).await;
    let listed: Value = app.get("/v1/service-accounts").await.json().await.unwrap();
    assert!(!listed.to_string().contains(&machine.id));
    let grants: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_role_grants WHERE user_id = $1::uuid")
            .bind(&machine.id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(grants, 0);
    // `rebuild_grants()` writes the same state again from the events.
    sqlx::query("SELECT rebuild_grants()")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(status_with(&app, &app.address, &machine.key).await, 401);
    let history: Value = app
        .get(&format!("/v1/audit/service_account/{}/history", machine.id))
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            domain::ServiceAccountEvent::CREATED.name(),
            domain::ServiceAccountEvent::ROLE_ASSIGNED.name(),
            domain::ServiceAccountEvent::KEY_ISSUED.name(),
            domain::ServiceAccountEvent::ERASED.name(),
        ]
    );
    assert_eq!(
        history["items"][2]["payload"]["KeyIssued"]["secret_hash"],
        domain::REDACTED
    );
}

#[tokio::test]
async fn the_provisioning_command_prints_an_account_and_a_working_key() {
    let app = spawn_app().await;
    app.create_role("provisioned", &["users:read"]).await;
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .args(["admin", "service-account", "create", "--name", "backup"])
        .args(["--role", "provisioned", "--expires-in-days", "30"])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .expect("run api admin service-account create");
    assert!(output.status.success(), "{output:?}");
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(created["scope"], json!(["users:read"]));
    let key = created["key"].as_str().unwrap();
    assert_eq!(status_with(&app, &app.address, key).await, 200);
    let refused = Command::new(env!("CARGO_BIN_EXE_api"))
        .args([
            "admin",
            "service-account",
            "create",
            "--name",
            "x",
            "--role",
            "missing",
        ])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no role is named \"missing\""));
}

#[tokio::test]
async fn a_standard_oauth_library_gets_and_uses_a_token() {
    let Some(python) = support::outside_python("authlib, requests") else {
        return;
    };
    let app = spawn_app().await;
    let machine = account_holding(&app, "outside", &["users:read", "roles:write"]).await;
    let address = app.address.clone();
    let (key_id, key) = (machine.key_id.clone(), machine.key.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(support::repository().join("examples/oauth-client/client_credentials.py"))
            .args([&address, &key_id, &key, "users:read"])
            .output()
            .expect("run the Python client")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    for method in ["client_secret_basic", "client_secret_post"] {
        let used = &results[method];
        assert_eq!(used["token_type"], "Bearer", "{results}");
        assert_eq!(used["scope"], "users:read");
        assert_eq!(used["users_status"], 200);
        // The token is narrowed to users:read: the key's roles:write is not in it.
        assert_eq!(used["create_role_status"], 403);
    }
    assert_eq!(results["wrong_secret"], "invalid_client");
    assert_eq!(results["wider_scope"], "invalid_scope");
}
