//! Ending sessions: revocation, logout and expiry seen by every `api`
//! process; the sessions list; a password change and a deactivation
//! revoke sessions.

use crate::support;
use std::time::{Duration, Instant};

use crate::support::{assert_problem, spawn_app, ApiProcess, TestApp, GOOD_PASSWORD};
use infra::testing::{eventually, TestDatabase, TestTopology};
use reqwest::Method;
use serde_json::{json, Value};

/// Two real `api` processes on one database (the first with `env`), with
/// the projector (and, when `worker`, the worker) in this process.
async fn two_processes(
    env: &[(&str, &str)],
    worker: &[&str],
) -> (TestDatabase, TestTopology, ApiProcess, ApiProcess) {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![support::projector_group(), support::worker_group()]);
    let common = support::api_settings(&db, &topology, &[]).common;
    support::spawn_projector(&common).await;
    if !worker.is_empty() {
        support::spawn_worker(&common, worker).await;
    }
    // One after the other: the first generates the shared signing key.
    let first = support::start_api_with(&db, &topology, env, None).await;
    let second = support::start_api(&db, &topology).await;
    (db, topology, first, second)
}

/// Registers (sign-up is open) and logs in on `process`: the tokens.
async fn session_on(client: &reqwest::Client, process: &ApiProcess, email: &str) -> Value {
    let response = client
        .post(format!("{}/v1/users", process.address))
        .json(&json!({"email": email, "password": GOOD_PASSWORD, "display_name": "Someone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    support::login(client, &process.address, email, GOOD_PASSWORD).await
}

/// The status of an authenticated request with `token` to `process`.
async fn status_with(client: &reqwest::Client, process: &ApiProcess, token: &str) -> u16 {
    client
        .get(format!("{}/v1/sessions", process.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `process` refuses `token` within `limit` (polling).
async fn refused_within(
    client: &reqwest::Client,
    process: &ApiProcess,
    token: &str,
    limit: Duration,
) {
    let started = Instant::now();
    loop {
        match status_with(client, process, token).await {
            401 => return,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
        assert!(
            started.elapsed() < limit,
            "{} still accepts the token after {limit:?}",
            process.address
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn token(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn revoked_and_logged_out_tokens_are_refused_by_every_api_process() {
    let (_db, _topology, a, b) = two_processes(&[], &[]).await;
    let client = reqwest::Client::new();

    // Revoked (DELETE /v1/sessions/{id}) on A, from another session.
    let revoked = session_on(&client, &a, "revoked@example.com").await;
    let other = support::login(&client, &a.address, "revoked@example.com", GOOD_PASSWORD).await;
    let revoked_token = token(&revoked);
    assert_eq!(status_with(&client, &a, &revoked_token).await, 200);
    assert_eq!(status_with(&client, &b, &revoked_token).await, 200);
    let response = client
        .delete(format!(
            "{}/v1/sessions/{}",
            a.address,
            revoked["session_id"].as_str().unwrap()
        ))
        .bearer_auth(token(&other))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let at_once = client
        .get(format!("{}/v1/sessions", a.address))
        .bearer_auth(&revoked_token)
        .send()
        .await
        .unwrap();
    assert_problem(at_once, 401, "unauthorized", None).await;
    refused_within(
        &client,
        &b,
        &revoked_token,
        Duration::from_secs(1).saturating_sub(started.elapsed()),
    )
    .await;
    assert_eq!(status_with(&client, &b, &token(&other)).await, 200);

    // Logged out on B.
    let out = session_on(&client, &a, "out@example.com").await;
    let out_token = token(&out);
    assert_eq!(status_with(&client, &a, &out_token).await, 200);
    let response = client
        .post(format!("{}/v1/auth/logout", b.address))
        .bearer_auth(&out_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let started = Instant::now();
    assert_eq!(status_with(&client, &b, &out_token).await, 401);
    refused_within(
        &client,
        &a,
        &out_token,
        Duration::from_secs(1).saturating_sub(started.elapsed()),
    )
    .await;
    // Refresh is dead too.
    let refresh = client
        .post(format!("{}/v1/auth/refresh", a.address))
        .json(&json!({"refresh_token": out["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 401);
}

#[tokio::test]
async fn expired_tokens_are_refused_by_every_api_process() {
    let (db, _topology, a, b) = two_processes(
        &[("SESSION_IDLE_TIMEOUT_SECONDS", "4")],
        &["--session-expiry-interval-ms=200"],
    )
    .await;
    let client = reqwest::Client::new();
    let tokens = session_on(&client, &a, "idle@example.com").await;
    let access = token(&tokens);
    let session_id = tokens["session_id"].as_str().unwrap();
    assert_eq!(status_with(&client, &a, &access).await, 200);
    assert_eq!(status_with(&client, &b, &access).await, 200);

    eventually(
        Duration::from_secs(20),
        domain::SessionEvent::EXPIRED.name(),
        || async {
            let expired: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM events WHERE aggregate_type = 'session' \
             AND aggregate_id = $1 AND event_type = '{}'",
                domain::SessionEvent::EXPIRED.name()
            ))
            .bind(session_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            (expired == 1).then_some(())
        },
    )
    .await;
    let started = Instant::now();
    for process in [&a, &b] {
        refused_within(
            &client,
            process,
            &access,
            Duration::from_secs(1).saturating_sub(started.elapsed()),
        )
        .await;
    }
    let refresh = client
        .post(format!("{}/v1/auth/refresh", b.address))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 401);
}

/// The caller's sessions as `GET /v1/sessions` lists them once the read
/// model reached `position`.
async fn own_sessions(app: &TestApp, token: &str, position: i64) -> Vec<Value> {
    let response = app
        .get_as(&format!("/v1/sessions?min_position={position}"), token)
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("projection-position"));
    let list: Value = response.json().await.unwrap();
    list["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn sessions_list_shows_own_sessions_with_their_status() {
    let app = spawn_app().await;
    let (alice, first) = app.user_with_session("alice@example.com").await;
    let second = support::login(
        &app.client,
        &app.address,
        "alice@example.com",
        GOOD_PASSWORD,
    )
    .await;
    app.user_with_session("bob@example.com").await;
    let first_id = first["session_id"].as_str().unwrap();
    let second_id = second["session_id"].as_str().unwrap();

    let response = app
        .request(
            Method::DELETE,
            &format!("/v1/sessions/{first_id}"),
            Some(&token(&second)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], first_id);
    let position = body["position"].as_i64().unwrap();

    let items = own_sessions(&app, &token(&second), position).await;
    assert_eq!(items.len(), 2, "only alice's sessions: {items:?}");
    assert!(items.iter().all(|s| s["user_id"] == alice.as_str()));
    // Newest first.
    assert_eq!(items[0]["session_id"], second_id);
    assert_eq!(items[0]["status"], "active");
    assert!(items[0]["ended_at"].is_null());
    assert_eq!(items[1]["session_id"], first_id);
    assert_eq!(items[1]["status"], "revoked");
    assert_eq!(items[1]["end_reason"], "revoked");
    assert!(items[1]["ended_at"].is_string());
    assert_eq!(items[1]["ip"], "127.0.0.1");
}

async fn change_password(
    app: &TestApp,
    user_id: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/v1/users/{user_id}/password"),
        Some(token),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

async fn refresh(app: &TestApp, tokens: &Value) -> reqwest::Response {
    app.request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap()
}

async fn login_status(app: &TestApp, email: &str, password: &str) -> u16 {
    app.request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn changing_ones_password_needs_the_current_one_and_revokes_every_other_session() {
    let app = spawn_app().await;
    let email = "alice@example.com";
    let (alice, current) = app.user_with_session(email).await;
    let others = [
        support::login(&app.client, &app.address, email, GOOD_PASSWORD).await,
        support::login(&app.client, &app.address, email, GOOD_PASSWORD).await,
    ];
    let new_password = "a new and better passphrase";
    // A wrong current password is a failed login, recorded as such by a
    // task of its own (`user.login_failed`, whenever it lands); nothing
    // else may be written.
    let written = |app: &'_ crate::support::TestApp| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE event_type <> $1")
                .bind(domain::UserEvent::LOGIN_FAILED.name())
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let before = written(&app).await;

    let missing = change_password(
        &app,
        &alice,
        &token(&current),
        json!({"new_password": new_password}),
    )
    .await;
    assert_problem(missing, 422, "validation-failed", Some("current_password")).await;
    let wrong = change_password(
        &app,
        &alice,
        &token(&current),
        json!({"current_password": "not my password at all", "new_password": new_password}),
    )
    .await;
    assert_problem(wrong, 422, "validation-failed", Some("current_password")).await;
    assert_eq!(written(&app).await, before, "a refused change wrote");
    for other in &others {
        assert_eq!(
            app.get_as("/v1/sessions", &token(other)).await.status(),
            200
        );
    }

    let changed = change_password(
        &app,
        &alice,
        &token(&current),
        json!({"current_password": GOOD_PASSWORD, "new_password": new_password}),
    )
    .await;
    assert_eq!(changed.status(), 200);
    for other in &others {
        let refused = app.get_as("/v1/sessions", &token(other)).await;
        assert_problem(refused, 401, "unauthorized", None).await;
        assert_eq!(refresh(&app, other).await.status(), 401);
        assert_eq!(
            support::revocation_reasons(&app.db, other["session_id"].as_str().unwrap()).await,
            ["password_changed"]
        );
    }
    // The session that changed it goes on, and can refresh.
    assert_eq!(
        app.get_as("/v1/sessions", &token(&current)).await.status(),
        200
    );
    assert_eq!(refresh(&app, &current).await.status(), 200);
    assert_eq!(login_status(&app, email, GOOD_PASSWORD).await, 401);
    assert_eq!(login_status(&app, email, new_password).await, 200);
}

#[tokio::test]
async fn an_administrator_setting_a_password_revokes_every_session_of_the_user() {
    let app = spawn_app().await;
    let email = "bob@example.com";
    let (bob, first) = app.user_with_session(email).await;
    let second = support::login(&app.client, &app.address, email, GOOD_PASSWORD).await;
    let new_password = "set by the administrator";

    let response = change_password(
        &app,
        &bob,
        &app.admin_token,
        json!({"new_password": new_password}),
    )
    .await;
    assert_eq!(response.status(), 200);
    for session in [&first, &second] {
        let refused = app.get_as("/v1/sessions", &token(session)).await;
        assert_problem(refused, 401, "unauthorized", None).await;
        assert_eq!(refresh(&app, session).await.status(), 401);
    }
    // The administrator's own session is not the user's: it goes on.
    assert_eq!(
        app.get_as("/v1/sessions", &app.admin_token).await.status(),
        200
    );
    assert_eq!(login_status(&app, email, new_password).await, 200);
}

#[tokio::test]
async fn deactivating_a_user_revokes_all_their_sessions() {
    let app = spawn_app().await;
    let email = "carol@example.com";
    let (carol, first) = app.user_with_session(email).await;
    let second = support::login(&app.client, &app.address, email, GOOD_PASSWORD).await;
    for session in [&first, &second] {
        assert_eq!(
            app.get_as("/v1/sessions", &token(session)).await.status(),
            200
        );
    }

    let response = app
        .post_empty(&format!("/v1/users/{carol}/deactivate"))
        .await;
    assert_eq!(response.status(), 200);
    for session in [&first, &second] {
        let refused = app.get_as("/v1/sessions", &token(session)).await;
        assert_problem(refused, 401, "unauthorized", None).await;
        assert_eq!(refresh(&app, session).await.status(), 401);
        assert_eq!(
            support::revocation_reasons(&app.db, session["session_id"].as_str().unwrap()).await,
            ["user_deactivated"]
        );
    }
    assert_eq!(
        support::count_events(&app.db, domain::SessionEvent::REVOKED.name()).await,
        2
    );
    // And a deactivated user cannot start a new one.
    assert_eq!(login_status(&app, email, GOOD_PASSWORD).await, 401);
}

/// The session check itself enforces the deadlines: with no worker running
/// (nothing writes `session.expired`), a token of a session past its idle
/// timeout is refused, and so is its refresh token.
#[tokio::test]
async fn a_session_past_its_idle_deadline_is_refused_without_the_worker() {
    let app = spawn_app().await;
    let (id, position) = app.register("idle@example.com", "Idle").await;
    // /v1/users/me answers from the read model.
    app.await_user(&id, position).await;
    let short = support::api_settings(
        &app.db,
        &app.topology,
        &["--relay-enabled=false", "--session-idle-timeout-seconds=3"],
    );
    let short_lived = api::startup::Application::build(short)
        .await
        .expect("build an api with a 3 s idle timeout");
    let short_address = format!("http://127.0.0.1:{}", short_lived.port());
    tokio::spawn(short_lived.run_until_stopped());
    let tokens = support::login(
        &app.client,
        &short_address,
        "idle@example.com",
        GOOD_PASSWORD,
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap();
    let me = app.get_as("/v1/users/me", access).await;
    assert_eq!(me.status(), 200, "live at first, on the other process too");

    tokio::time::sleep(Duration::from_millis(3300)).await;
    let me = app.get_as("/v1/users/me", access).await;
    assert_problem(me, 401, "unauthorized", None).await;
    let refresh = app
        .request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_problem(refresh, 401, "invalid-refresh-token", None).await;
    let expired: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM events WHERE event_type = '{}'",
        domain::SessionEvent::EXPIRED.name()
    ))
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        expired, 0,
        "no worker ran: the refusal came from the deadline"
    );
}

/// Ending a user's sessions survives a concurrent writer: a revocation that
/// loses the append to a refresh committed meanwhile reloads the session and
/// revokes it (not a 500 with the session left active). The refresh is held
/// in an open transaction so that the race happens every time.
#[tokio::test]
async fn revoking_all_sessions_retries_one_that_a_refresh_changed_meanwhile() {
    let app = spawn_app().await;
    let (user_id, session) = app.user_with_session("racer@example.com").await;
    let session_id = session["session_id"].as_str().unwrap().to_string();

    let refreshed = serde_json::to_value(domain::SessionEvent::Refreshed {
        refresh_token_hash: domain::RefreshTokenHash::new("00".repeat(32)),
        refreshed_at: chrono::Utc::now(),
    })
    .unwrap();
    let mut refresh = app.db.pool.begin().await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                             event_version, payload, metadata) \
         VALUES ('session', $1, 2, '{}', '1', $2, '{{}}')",
        domain::SessionEvent::REFRESHED.name()
    ))
    .bind(&session_id)
    .bind(&refreshed)
    .execute(&mut *refresh)
    .await
    .unwrap();

    // Loads the session at sequence 1, then waits on the refresh's row.
    let pool = app.db.pool.clone();
    let user = uuid::Uuid::parse_str(&user_id).unwrap();
    let revocation = tokio::spawn(async move {
        infra::sessions::UserSessions::new(pool)
            .revoke_all(
                user,
                None,
                domain::RevocationReason::UserDeactivated,
                &bus::EventMetadata::default(),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    refresh.commit().await.unwrap();

    revocation
        .await
        .unwrap()
        .expect("the revocation is retried, not failed");
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'session' \
         AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&session_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            domain::SessionEvent::STARTED.name(),
            domain::SessionEvent::REFRESHED.name(),
            domain::SessionEvent::REVOKED.name()
        ]
    );
}
