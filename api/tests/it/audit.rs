//! Auditors: one stream's history and an aggregate's state as of a moment,
//! read from the event store; both need `audit:read`.

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_problem, spawn_app, TestApp};

/// Registers ada, changes her email, assigns her a role: `(id, role id)`.
pub async fn ada_with_history(app: &TestApp) -> (String, String) {
    let (id, _) = app.register("ada@example.com", "Ada").await;
    let response = app
        .patch_json(
            &format!("/v1/users/{id}"),
            &json!({"email": "ada.lovelace@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 200, "change the email");
    let role = app.create_role("auditee", &["users:read"]).await;
    app.assign_role(&id, &role).await;
    (id, role)
}

async fn json_of(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("json")
}

fn recorded_at(event: &Value) -> DateTime<Utc> {
    event["recorded_at"]
        .as_str()
        .expect("recorded_at")
        .parse()
        .expect("RFC 3339")
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test]
async fn audit_routes_need_audit_read() {
    let app = spawn_app().await;
    let (id, _) = app.register("ada@example.com", "Ada").await;
    let without = app.user_holding("reader", &["users:read"]).await.1;
    let with = app.user_holding("auditor", &["audit:read"]).await.1;
    for path in [
        format!("/v1/audit/user/{id}/history"),
        format!("/v1/audit/user/{id}/state"),
        "/v1/audit/events".to_owned(),
        "/v1/audit/export".to_owned(),
    ] {
        let response = app.send(Method::GET, &path, &without, None).await;
        let problem = assert_problem(response, 403, "forbidden", None).await;
        assert!(
            problem["detail"].as_str().unwrap().ends_with("audit:read"),
            "{problem}"
        );
        let response = app.request(Method::GET, &path, None).send().await.unwrap();
        assert_problem(response, 401, "unauthorized", None).await;
        let response = app.send(Method::GET, &path, &with, None).await;
        assert_eq!(response.status(), 200, "{path} with audit:read");
    }
}

#[tokio::test]
async fn history_lists_the_stream_in_order_with_summaries_and_no_secrets() {
    let app = spawn_app().await;
    let (id, role) = ada_with_history(&app).await;

    let response = app.get(&format!("/v1/audit/user/{id}/history")).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("$argon2"), "a password hash in {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let items = body["items"].as_array().expect("items");
    let types: Vec<&str> = items
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            domain::UserEvent::REGISTERED.name(),
            domain::UserEvent::EMAIL_CHANGED.name(),
            domain::UserEvent::ROLE_ASSIGNED.name(),
        ]
    );
    let sequences: Vec<i64> = items
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3]);
    let positions: Vec<i64> = items
        .iter()
        .map(|e| e["global_position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(
        items[0]["summary"], "registered as ada@example.com (Ada)",
        "{}",
        items[0]
    );
    assert_eq!(
        items[1]["summary"],
        "email changed to ada.lovelace@example.com (was ada@example.com)"
    );
    assert_eq!(items[2]["summary"], format!("role {role} assigned"));
    let registered = &items[0];
    assert_eq!(
        registered["payload"]["Registered"]["password_hash"],
        "[redacted]"
    );
    assert_eq!(registered["aggregate_type"], "user");
    assert_eq!(registered["aggregate_id"], id.as_str());
    assert_eq!(registered["event_version"], "1");
    assert!(registered["event_id"].is_string());
    assert_eq!(registered["metadata"]["actor_id"], app.admin_id.as_str());
    assert!(registered["metadata"]["correlation_id"].is_string());
    assert!(registered["metadata"]["causation_id"].is_string());
    assert!(registered["metadata"]["occurred_at"].is_string());
}

/// A long stream is never one answer: an auditor (or anyone holding
/// `audit:read`) walks it page by page with the cursor, each event once,
/// in sequence order.
#[tokio::test]
async fn history_is_paged_and_the_cursor_walks_every_event_once_in_order() {
    let app = spawn_app().await;
    let (id, _) = app.register("ada@example.com", "Ada").await;
    for n in 1..=6 {
        let response = app
            .patch_json(
                &format!("/v1/users/{id}"),
                &json!({"display_name": format!("Ada {n}")}),
            )
            .await;
        assert_eq!(response.status(), 200, "rename {n}");
    }
    let mut path = format!("/v1/audit/user/{id}/history?limit=3");
    let mut pages = Vec::new();
    let mut walked = Vec::new();
    loop {
        let page = json_of(&app, &path).await;
        let items = page["items"].as_array().unwrap();
        pages.push(items.len());
        walked.extend(items.iter().map(|e| e["sequence"].as_i64().unwrap()));
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(cursor) => {
                path = format!("/v1/audit/user/{id}/history?limit=3&cursor={cursor}");
            }
            None => break,
        }
        assert!(pages.len() < 10, "the walk does not end: {pages:?}");
    }
    assert_eq!(walked, (1..=7).collect::<Vec<i64>>());
    assert_eq!(pages, [3, 3, 1]);
    // Without a limit, 100 a page: this stream is one page, with no cursor.
    let whole = json_of(&app, &format!("/v1/audit/user/{id}/history")).await;
    assert_eq!(whole["items"].as_array().unwrap().len(), 7);
    assert!(whole.get("next_cursor").is_none_or(Value::is_null));
}

/// A limit out of range, a cursor issued for another stream (or for the
/// log, or never issued) and an unknown parameter are each a 400 naming it.
#[tokio::test]
async fn history_refuses_a_bad_limit_a_foreign_cursor_and_unknown_parameters() {
    let app = spawn_app().await;
    let (ada, _) = app.register("ada@example.com", "Ada").await;
    let (bob, _) = app.register("bob@example.com", "Bob").await;
    for n in 1..=2 {
        let response = app
            .patch_json(
                &format!("/v1/users/{bob}"),
                &json!({"display_name": format!("Bob {n}")}),
            )
            .await;
        assert_eq!(response.status(), 200, "rename {n}");
    }
    for limit in ["0", "1001", "-1", "many"] {
        let response = app
            .get(&format!("/v1/audit/user/{ada}/history?limit={limit}"))
            .await;
        assert_problem(response, 400, "bad-request", Some("limit")).await;
    }
    let bobs = json_of(&app, &format!("/v1/audit/user/{bob}/history?limit=1")).await;
    let bobs_cursor = bobs["next_cursor"].as_str().expect("a cursor").to_owned();
    let log = json_of(&app, "/v1/audit/events?limit=1").await;
    let log_cursor = log["next_cursor"].as_str().expect("a cursor").to_owned();
    for cursor in [
        bobs_cursor.as_str(),
        log_cursor.as_str(),
        "bm90LWEtY3Vyc29y",
    ] {
        let response = app
            .get(&format!("/v1/audit/user/{ada}/history?cursor={cursor}"))
            .await;
        assert_problem(response, 400, "bad-request", Some("cursor")).await;
    }
    let response = app
        .get(&format!("/v1/audit/user/{ada}/history?page=2"))
        .await;
    assert_problem(response, 400, "bad-request", Some("page")).await;
    // Bob's own cursor goes on.
    let next = json_of(
        &app,
        &format!("/v1/audit/user/{bob}/history?limit=1&cursor={bobs_cursor}"),
    )
    .await;
    assert_eq!(next["items"][0]["sequence"], 2, "{next}");
}

#[tokio::test]
async fn state_as_of_gives_each_state_in_turn_and_the_current_one_equals_the_read_model() {
    let app = spawn_app().await;
    let (id, role) = ada_with_history(&app).await;
    let response = app.post_empty(&format!("/v1/users/{id}/deactivate")).await;
    assert_eq!(response.status(), 200, "deactivate");
    let history = json_of(&app, &format!("/v1/audit/user/{id}/history")).await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        4,
        "registered, email changed, role assigned, deactivated"
    );
    let t: Vec<DateTime<Utc>> = items.iter().map(recorded_at).collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    let state_at = |at: DateTime<Utc>| format!("/v1/audit/user/{id}/state?as_of={}", rfc3339(at));
    let between = |i: usize| t[i] + (t[i + 1] - t[i]) / 2;

    let response = app.get(&state_at(t[0] - TimeDelta::milliseconds(1))).await;
    let problem = assert_problem(response, 404, "not-found", None).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("user"),
        "{problem}"
    );

    // (as of, email, roles, status, sequence) after each step.
    let expected = [
        (between(0), "ada@example.com", json!([]), "active", 1),
        (
            between(1),
            "ada.lovelace@example.com",
            json!([]),
            "active",
            2,
        ),
        (
            between(2),
            "ada.lovelace@example.com",
            json!([role]),
            "active",
            3,
        ),
        (
            t[3] + TimeDelta::seconds(1),
            "ada.lovelace@example.com",
            json!([role]),
            "deactivated",
            4,
        ),
    ];
    for (at, email, roles, status, sequence) in expected {
        let state = json_of(&app, &state_at(at)).await;
        assert_eq!(state["state"]["email"], email, "{state}");
        assert_eq!(state["state"]["roles"], roles, "{state}");
        assert_eq!(state["state"]["status"], status, "{state}");
        assert_eq!(state["state"]["display_name"], "Ada");
        assert_eq!(state["sequence"], sequence);
        let last = &items[sequence as usize - 1];
        assert_eq!(state["global_position"], last["global_position"]);
        assert_eq!(state["recorded_at"], last["recorded_at"]);
    }
    // `as_of` is inclusive.
    assert_eq!(json_of(&app, &state_at(t[1])).await["sequence"], 2);

    let now = json_of(&app, &format!("/v1/audit/user/{id}/state")).await;
    assert_eq!(now["sequence"], 4);
    assert_eq!(now["state"]["id"], id.as_str());
    let text = now.to_string();
    assert!(
        !text.contains("password") && !text.contains("argon2"),
        "{text}"
    );
    let position = items[3]["global_position"].as_i64().unwrap();
    let row = app.user_at(&id, position).await;
    for field in ["id", "email", "display_name", "status"] {
        assert_eq!(now["state"][field], row[field], "{field}: {now} vs {row}");
    }
    assert_eq!(now["sequence"], row["version"]);

    // The role the user holds, as its own stream.
    let role_state = json_of(&app, &format!("/v1/audit/role/{role}/state")).await;
    assert_eq!(role_state["state"]["name"], "auditee");
    assert_eq!(role_state["state"]["permissions"], json!(["users:read"]));
    assert_eq!(role_state["state"]["deleted"], false);
}

#[tokio::test]
async fn bad_requests_are_problems_naming_what_is_wrong() {
    let app = spawn_app().await;
    let (id, _) = app.register("ada@example.com", "Ada").await;

    for bad in ["yesterday", "2026-13-01T00:00:00Z", "2026-01-01"] {
        let response = app
            .get(&format!("/v1/audit/user/{id}/state?as_of={bad}"))
            .await;
        assert_problem(response, 400, "bad-request", Some("as_of")).await;
    }

    for path in [
        format!("/v1/audit/order/{id}/history"),
        format!("/v1/audit/order/{id}/state"),
    ] {
        let response = app.get(&path).await;
        let problem = assert_problem(response, 404, "not-found", None).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("\"order\""),
            "{problem}"
        );
    }

    let nobody = uuid::Uuid::new_v4();
    for path in [
        format!("/v1/audit/user/{nobody}/history"),
        format!("/v1/audit/user/{nobody}/state"),
        "/v1/audit/session/not-a-uuid/history".to_owned(),
    ] {
        let response = app.get(&path).await;
        assert_problem(response, 404, "not-found", None).await;
    }
}

#[tokio::test]
async fn a_session_stream_shows_no_refresh_token_hash() {
    let app = spawn_app().await;
    let (user_id, tokens) = app.user_with_session("ada@example.com").await;
    let session_id = tokens["session_id"]
        .as_str()
        .expect("session_id")
        .to_owned();
    let access = tokens["access_token"].as_str().expect("access_token");
    let response = app
        .send(Method::POST, "/v1/auth/logout", access, None)
        .await;
    assert_eq!(response.status(), 204);
    let stored: String = sqlx::query_scalar(&format!(
        "SELECT {} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        domain::SessionEvent::STARTED
            .field("refresh_token_hash")
            .json_text()
    ))
    .bind(<domain::Session as cqrs_es::Aggregate>::TYPE)
    .bind(&session_id)
    .fetch_one(&app.db.pool)
    .await
    .expect("the stored hash");

    let response = app
        .get(&format!("/v1/audit/session/{session_id}/history"))
        .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&stored), "the refresh token hash in {text}");
    let history: Value = serde_json::from_str(&text).unwrap();
    let summaries: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert!(
        summaries[0].starts_with(&format!("session started for user {user_id}")),
        "{summaries:?}"
    );
    assert_eq!(summaries[1], "session revoked: logged_out");

    let response = app
        .get(&format!("/v1/audit/session/{session_id}/state"))
        .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&stored), "the refresh token hash in {text}");
    let state: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(state["state"]["user_id"], user_id.as_str());
    assert_eq!(state["state"]["ended"]["kind"], "revoked");
    assert_eq!(state["state"]["ended"]["reason"], "logged_out");
}
