//! Erasure (`POST /v1/users/{id}/erase`): afterwards nothing the service
//! stores or exports holds the person's addresses, name, client address or
//! user agent; the proof still verifies; the mailbox is free again; and
//! erasure obeys the escalation and last-administrator rules.

use std::net::{IpAddr, Ipv4Addr};

use domain::UserEvent;
use infra::testing::eventually;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    assert_problem, count_events, spawn_app, spawn_app_with_worker, TestApp, GOOD_PASSWORD, SHORT,
};

const FIRST_EMAIL: &str = "ada.erasable@example.com";
const SECOND_EMAIL: &str = "ada.moved@example.org";
const DISPLAY_NAME: &str = "Ada Erasable";
/// The person's own client: an address and an agent nobody else uses.
const PERSON_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);
const PERSON_AGENT: &str = "ErasureProbe/1.0 (Ada's laptop)";

/// A client that connects from [`PERSON_IP`] and sends [`PERSON_AGENT`].
fn person_client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(PERSON_IP))
        .user_agent(PERSON_AGENT)
        .build()
        .expect("client")
}

/// Everything the person leaves: registered, email changed by themself,
/// logged in, one failed login; `(id, access token)`.
async fn a_person_with_a_history(app: &TestApp) -> (String, String) {
    let (id, _) = app.register(FIRST_EMAIL, DISPLAY_NAME).await;
    let client = person_client();
    let login = |email: &'static str, password: &'static str| {
        client
            .post(app.url("/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let tokens: Value = login(FIRST_EMAIL, GOOD_PASSWORD)
        .await
        .expect("login")
        .json()
        .await
        .expect("tokens");
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    let changed = client
        .patch(app.url(&format!("/v1/users/{id}")))
        .bearer_auth(&token)
        .json(&json!({"email": SECOND_EMAIL}))
        .send()
        .await
        .expect("change email");
    assert_eq!(changed.status(), 200);
    let failed = login(SECOND_EMAIL, "not the password at all")
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    (id, token)
}

async fn erase(app: &TestApp, id: &str, token: &str) -> reqwest::Response {
    app.send(Method::POST, &format!("/v1/users/{id}/erase"), token, None)
        .await
}

/// `ILIKE` pattern matching `needle` anywhere.
fn containing(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// `table.column` of every column of every table (and view) of the
/// database whose text holds `needle`, in any case.
async fn columns_holding(pool: &sqlx::PgPool, needle: &str) -> Vec<String> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("columns");
    let mut found = Vec::new();
    for (table, column) in columns {
        let sql = format!("SELECT count(*) FROM \"{table}\" WHERE \"{column}\"::text ILIKE $1");
        let count: i64 = sqlx::query_scalar(&sql)
            .bind(containing(needle))
            .fetch_one(pool)
            .await
            .expect("search");
        if count > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    found
}

fn personal_values() -> [String; 5] {
    [
        FIRST_EMAIL.into(),
        SECOND_EMAIL.into(),
        DISPLAY_NAME.into(),
        PERSON_IP.to_string(),
        PERSON_AGENT.into(),
    ]
}

/// Waits until the worker holds the person's failed login (the search then
/// shows the worker forgot it, not that it never had it).
async fn worker_recorded_the_failure(app: &TestApp, id: &str) {
    let id = uuid::Uuid::parse_str(id).unwrap();
    eventually(SHORT, "the failure counted by the worker", || async {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM login_failures WHERE user_id = $1")
                .bind(id)
                .fetch_one(&app.db.pool)
                .await
                .ok()?;
        (count > 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn after_an_erasure_nothing_stored_or_exported_holds_the_person() {
    let app = spawn_app_with_worker(&[], &[]).await;
    let (id, token) = a_person_with_a_history(&app).await;
    worker_recorded_the_failure(&app, &id).await;
    for value in personal_values() {
        assert!(
            !columns_holding(&app.db.pool, &value).await.is_empty(),
            "the probe must find {value} before the erasure"
        );
    }

    let response = erase(&app, &id, &app.admin_token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], id.as_str());
    let position = body["position"].as_i64().expect("position");
    let user = app.user_at(&id, position).await;
    assert_eq!(user["status"], "erased", "{user}");

    for value in personal_values() {
        eventually(SHORT, "nothing holds the person", || async {
            let found = columns_holding(&app.db.pool, &value).await;
            found.is_empty().then_some(())
        })
        .await;
        let export = app.get("/v1/audit/export").await;
        assert_eq!(export.status(), 200);
        let text = export.text().await.unwrap().to_lowercase();
        assert!(
            !text.contains(&value.to_lowercase()),
            "export holds {value}"
        );
    }
    let revoked = app.get_as("/v1/users/me", &token).await;
    assert_eq!(revoked.status(), 401, "the person's sessions are revoked");
    let verified: Value = crate::integrity::verified(&app).await;
    assert_eq!(verified["ok"], true, "{verified}");
}

#[tokio::test]
async fn an_erased_person_reads_erased_their_mailbox_is_free_and_erasing_again_is_harmless() {
    let app = spawn_app().await;
    let (id, _) = a_person_with_a_history(&app).await;
    assert_eq!(erase(&app, &id, &app.admin_token).await.status(), 200);

    let state = app.get(&format!("/v1/audit/user/{id}/state")).await;
    assert_eq!(state.status(), 200);
    let state: Value = state.json().await.unwrap();
    assert_eq!(state["state"]["email"], domain::ERASED, "{state}");
    assert_eq!(state["state"]["display_name"], domain::ERASED, "{state}");
    let history = app.get(&format!("/v1/audit/user/{id}/history")).await;
    assert_eq!(history.status(), 200, "the erased stream still reads");

    app.register(FIRST_EMAIL, "Someone Else").await;
    app.register(SECOND_EMAIL, "Someone Else Again").await;

    let again = erase(&app, &id, &app.admin_token).await;
    assert_eq!(again.status(), 200);
    let erasures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = $2",
    )
    .bind(&id)
    .bind(UserEvent::ERASED.name())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(erasures, 1);
    assert_eq!(count_events(&app.db, UserEvent::ERASED.name()).await, 1);
}

#[tokio::test]
async fn an_erased_user_takes_no_more_commands_and_an_unknown_one_is_not_found() {
    let app = spawn_app().await;
    let (id, _) = app.register("gone@example.com", "Gone").await;
    assert_eq!(erase(&app, &id, &app.admin_token).await.status(), 200);
    let commands = [
        (Method::POST, format!("/v1/users/{id}/deactivate"), None),
        (Method::POST, format!("/v1/users/{id}/unlock"), None),
        (
            Method::PATCH,
            format!("/v1/users/{id}"),
            Some(json!({"display_name": "Back"})),
        ),
        (
            Method::POST,
            format!("/v1/users/{id}/password"),
            Some(json!({"new_password": "a brand new passphrase"})),
        ),
    ];
    for (method, path, body) in commands {
        let response = app.send(method, &path, &app.admin_token, body).await;
        assert_problem(response, 404, "not-found", None).await;
    }
    for unknown in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".into()] {
        let response = erase(&app, &unknown, &app.admin_token).await;
        assert_problem(response, 404, "not-found", None).await;
    }
}

#[tokio::test]
async fn erasing_needs_users_erase_and_every_permission_the_person_holds() {
    let app = spawn_app().await;
    let (target, _, _) = app.user_holding("target", &["users:read"]).await;
    let (_, writer, _) = app.user_holding("writer", &["users:write"]).await;
    let (_, eraser, _) = app.user_holding("eraser", &["users:erase"]).await;

    for (token, missing) in [(&writer, "users:erase"), (&eraser, "users:read")] {
        let problem =
            assert_problem(erase(&app, &target, token).await, 403, "forbidden", None).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.ends_with(missing), "{detail} should name {missing}");
    }
    assert_eq!(
        count_events(&app.db, UserEvent::ERASED.name()).await,
        0,
        "nothing was erased"
    );
    let (plain, _) = app.register("plain@example.com", "Plain").await;
    assert_eq!(erase(&app, &plain, &eraser).await.status(), 200);
}

#[tokio::test]
async fn the_last_administrator_cannot_be_erased() {
    let app = spawn_app().await;
    let response = erase(&app, &app.admin_id, &app.admin_token).await;
    assert_problem(response, 409, "last-administrator", None).await;
    assert_eq!(count_events(&app.db, UserEvent::ERASED.name()).await, 0);
}

/// `api admin erase-user --user-id ID` as an operator would run it.
fn erase_user_cli(app: &TestApp, id: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .args(["admin", "erase-user", "--user-id", id])
        .env("DATABASE_URL", &app.db.url)
        .env("LOG_FORMAT", "json")
        .output()
        .expect("run api admin erase-user")
}

#[tokio::test]
async fn the_operator_erases_from_the_command_line_but_never_the_last_administrator() {
    let app = spawn_app().await;
    let (id, _) = app.register("cli.gone@example.com", "Cli Gone").await;
    let output = erase_user_cli(&app, &id);
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains(&format!("user {id} erased")), "{printed}");
    assert!(columns_holding(&app.db.pool, "cli.gone@example.com")
        .await
        .iter()
        .all(|column| column.starts_with("users_view.")));
    assert!(erase_user_cli(&app, &id).status.success(), "again");

    let unknown = erase_user_cli(&app, &uuid::Uuid::now_v7().to_string());
    assert!(!unknown.status.success());
    let last = erase_user_cli(&app, &app.admin_id);
    assert!(!last.status.success());
    assert_eq!(count_events(&app.db, UserEvent::ERASED.name()).await, 1);
}
