//! Protection against guessing and leaks: lockout and address blocking
//! through the real worker and broker, session expiry by the worker, and
//! no secret in the logs of the real `api` binary.

use crate::support;
use std::time::Duration;

use crate::support::{
    address_blocked, assert_problem, login_attempt, spawn_app_with_worker, TestApp, GOOD_PASSWORD,
    SHORT,
};
use chrono::{DateTime, Utc};
use infra::testing::{eventually, TestDatabase, TestTopology};
use reqwest::Method;
use serde_json::{json, Value};

/// What a client can tell one refusal from another by.
fn visible(problem: &Value) -> Value {
    json!([
        problem["type"],
        problem["title"],
        problem["status"],
        problem["detail"]
    ])
}

async fn refresh_status(app: &TestApp, tokens: &Value) -> u16 {
    app.request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn failed_logins_lock_the_user_through_the_worker_until_the_lock_runs_out() {
    let app = spawn_app_with_worker(
        &[],
        &[
            "--lockout-threshold=3",
            "--lockout-window-seconds=60",
            // Long enough for the check below on a loaded machine (a login
            // verifies an argon2id hash first).
            "--lockout-duration-seconds=3",
        ],
    )
    .await;
    let email = "target@example.com";
    let (user_id, session) = app.user_with_session(email).await;
    let access = session["access_token"].as_str().unwrap();
    assert_eq!(app.get_as("/v1/sessions", access).await.status(), 200);

    let mut wrong = Vec::new();
    for _ in 0..3 {
        let response = login_attempt(&app, email, "not the password at all").await;
        wrong.push(assert_problem(response, 401, "invalid-credentials", None).await);
    }

    let until: DateTime<Utc> = eventually(SHORT, domain::UserEvent::LOCKED.name(), || async {
        let until: Option<String> = sqlx::query_scalar(&format!(
            "SELECT payload -> 'Locked' ->> 'until' FROM events \
             WHERE aggregate_type = 'user' AND aggregate_id = $1 AND event_type = '{}'",
            domain::UserEvent::LOCKED.name()
        ))
        .bind(&user_id)
        .fetch_optional(&app.db.pool)
        .await
        .unwrap();
        until.map(|until| until.parse().unwrap())
    })
    .await;
    assert_eq!(
        support::count_events(&app.db, domain::UserEvent::LOCKED.name()).await,
        1
    );
    assert_eq!(
        support::count_events(&app.db, domain::UserEvent::LOGIN_FAILED.name()).await,
        3
    );

    // The right password is refused the same way while locked.
    let response = login_attempt(&app, email, GOOD_PASSWORD).await;
    assert!(Utc::now() < until, "the lock ran out before the check");
    let locked = assert_problem(response, 401, "invalid-credentials", None).await;
    assert_eq!(visible(&locked), visible(&wrong[0]));

    // The lock revoked the session the user had.
    let session_id = session["session_id"].as_str().unwrap().to_string();
    eventually(SHORT, "session revoked by the lock", || async {
        let reasons = support::revocation_reasons(&app.db, &session_id).await;
        (!reasons.is_empty()).then_some(reasons)
    })
    .await
    .iter()
    .for_each(|reason| assert_eq!(reason, "user_locked"));
    let refused = app.get_as("/v1/sessions", access).await;
    assert_problem(refused, 401, "unauthorized", None).await;
    assert_eq!(refresh_status(&app, &session).await, 401);

    // Once `until` has passed, the right password works again.
    let wait = (until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(100)).await;
    let response = login_attempt(&app, email, GOOD_PASSWORD).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let fresh = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.get_as("/v1/sessions", fresh).await.status(), 200);
}

#[tokio::test]
async fn failures_across_users_from_one_address_block_it() {
    let app = spawn_app_with_worker(
        &["--lockout-ip-threshold=4", "--lockout-window-seconds=60"],
        &["--lockout-threshold=10", "--lockout-window-seconds=60"],
    )
    .await;
    let users = ["one@example.com", "two@example.com", "three@example.com"];
    for email in users {
        app.register(email, "Someone").await;
    }
    for email in &users[..2] {
        for _ in 0..2 {
            let response = login_attempt(&app, email, "a wrong guess of a password").await;
            assert_eq!(response.status(), 401);
        }
    }
    address_blocked(&app).await;

    // Even the right password of a user who never failed.
    let response = login_attempt(&app, users[2], GOOD_PASSWORD).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=900).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_problem(response, 429, "too-many-requests", None).await;
    // No user was locked: the address is throttled, not the accounts.
    assert_eq!(
        support::count_events(&app.db, domain::UserEvent::LOCKED.name()).await,
        0
    );
}

#[tokio::test]
async fn the_worker_expires_idle_sessions() {
    let app = spawn_app_with_worker(
        &["--session-idle-timeout-seconds=3", "--signup-mode=open"],
        &["--session-expiry-interval-ms=200"],
    )
    .await;
    let (_, tokens) = app.user_with_session("idle@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let session_id = tokens["session_id"].as_str().unwrap().to_string();
    assert_eq!(app.get_as("/v1/sessions", access).await.status(), 200);

    let reason: String = eventually(SHORT, domain::SessionEvent::EXPIRED.name(), || async {
        sqlx::query_scalar(&format!(
            "SELECT payload -> 'Expired' ->> 'reason' FROM events \
             WHERE aggregate_type = 'session' AND aggregate_id = $1 AND event_type = '{}'",
            domain::SessionEvent::EXPIRED.name()
        ))
        .bind(&session_id)
        .fetch_optional(&app.db.pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(reason, "idle");
    let refused = app.get_as("/v1/sessions", access).await;
    assert_problem(refused, 401, "unauthorized", None).await;
    assert_eq!(refresh_status(&app, &tokens).await, 401);
    eventually(SHORT, "sessions_view shows the expiry", || async {
        let status: String =
            sqlx::query_scalar("SELECT status FROM sessions_view WHERE session_id = $1::uuid")
                .bind(&session_id)
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        (status == "expired").then_some(())
    })
    .await;
}

#[tokio::test]
async fn nothing_secret_reaches_the_logs() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![support::projector_group()]);
    let common = support::api_settings(&db, &topology, &[]).common;
    support::spawn_projector(&common).await;
    let log = std::env::temp_dir().join(format!("{}-api.log", db.name));
    let mut api =
        support::start_api_with(&db, &topology, &[("RUST_LOG", "debug")], Some(&log)).await;
    let client = reqwest::Client::new();
    let email = "secretive@example.com";
    let password = "a password nobody may read";
    let wrong = "a guess that must not be logged";

    let registered = client
        .post(format!("{}/v1/users", api.address))
        .json(&json!({"email": email, "password": password, "display_name": "Secretive"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let first = support::login(&client, &api.address, email, password).await;
    let listed = client
        .get(format!("{}/v1/sessions", api.address))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let refreshed = client
        .post(format!("{}/v1/auth/refresh", api.address))
        .json(&json!({"refresh_token": first["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let second: Value = refreshed.json().await.unwrap();
    let failed = client
        .post(format!("{}/v1/auth/login", api.address))
        .json(&json!({"email": email, "password": wrong}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    // Let the failure be recorded and the relay publish it all.
    eventually(SHORT, "failure recorded", || async {
        (support::count_events(&db, domain::UserEvent::LOGIN_FAILED.name()).await == 1)
            .then_some(())
    })
    .await;
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let caught_up = client
        .get(format!("{}/v1/sessions?min_position={last}", api.address))
        .bearer_auth(second["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(caught_up.status(), 200, "relay and projector caught up");

    // Stop it cleanly so everything is written.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &api.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = std::time::Instant::now() + SHORT;
    while api.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "api still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(!logs.is_empty(), "nothing was logged");
    assert!(
        logs.contains("/v1/auth/login"),
        "the login request is not in the log"
    );

    let key_pem = std::fs::read_to_string(support::key_file(&db)).unwrap();
    let key_body: String = key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert!(key_body.len() >= 40, "key body {key_body:?}");

    let mut secrets = vec![
        ("password", password.to_string()),
        ("wrong password", wrong.to_string()),
        ("password hash", "$argon2id".to_string()),
        ("private key", "PRIVATE KEY".to_string()),
        ("private key body", key_body),
    ];
    for (name, tokens) in [("first", &first), ("second", &second)] {
        let access = tokens["access_token"].as_str().unwrap().to_string();
        let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
        let signature = access.rsplit('.').next().unwrap().to_string();
        let refresh_secret = refresh.split_once('.').unwrap().1.to_string();
        secrets.push((name, access));
        secrets.push((name, signature));
        secrets.push((name, refresh));
        secrets.push((name, refresh_secret));
    }
    for (name, secret) in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{name} secret {secret:?} is in the log"
        );
    }
}

/// An administrator can lift a lock before it ends; the read model shows
/// the lock while it lasts. Unlocking needs `users:write`, and a user who is
/// not locked cannot be unlocked.
#[tokio::test]
async fn an_administrator_unlocks_a_locked_user_early() {
    let app = spawn_app_with_worker(
        &[],
        &[
            "--lockout-threshold=2",
            "--lockout-window-seconds=60",
            "--lockout-duration-seconds=600",
        ],
    )
    .await;
    let email = "locked@example.com";
    let (user_id, session) = app.user_with_session(email).await;
    let own_token = session["access_token"].as_str().unwrap().to_string();
    let unlock_path = format!("/v1/users/{user_id}/unlock");

    let not_locked = app.post_empty(&unlock_path).await;
    assert_problem(not_locked, 409, "conflict", None).await;

    for _ in 0..2 {
        let response = login_attempt(&app, email, "not the password at all").await;
        assert_problem(response, 401, "invalid-credentials", None).await;
    }
    eventually(SHORT, "the lock in users_view", || async {
        let user: Value = app
            .get(&format!("/v1/users/{user_id}"))
            .await
            .json()
            .await
            .ok()?;
        user["locked_until"].is_string().then_some(())
    })
    .await;
    let refused = login_attempt(&app, email, GOOD_PASSWORD).await;
    assert_problem(refused, 401, "invalid-credentials", None).await;

    // The lock ended the user's own session; another plain user lacks users:write.
    let by_the_user = app
        .request(Method::POST, &unlock_path, Some(&own_token))
        .send()
        .await
        .unwrap();
    assert_problem(by_the_user, 401, "unauthorized", None).await;
    let (_, other) = app.user_with_session("other@example.com").await;
    let by_another = app
        .request(Method::POST, &unlock_path, other["access_token"].as_str())
        .send()
        .await
        .unwrap();
    assert_problem(by_another, 403, "forbidden", None).await;

    let unlocked = app.post_empty(&unlock_path).await;
    assert_eq!(unlocked.status(), 200);
    let position = unlocked.json::<Value>().await.unwrap()["position"]
        .as_i64()
        .unwrap();
    assert_eq!(
        support::count_events(&app.db, domain::UserEvent::UNLOCKED.name()).await,
        1
    );
    let user: Value = app
        .get(&format!("/v1/users/{user_id}?min_position={position}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(user["locked_until"].is_null(), "{user}");
    let response = login_attempt(&app, email, GOOD_PASSWORD).await;
    assert_eq!(response.status(), 200, "the right password works at once");
}

/// Failures on emails nobody registered fill the address's count as much as
/// failures on real accounts, and then a login with an email that exists
/// and one that does not get the same answer: the block tells nothing.
#[tokio::test]
async fn a_blocked_address_answers_alike_for_emails_that_exist_and_emails_that_do_not() {
    let app = support::spawn_app_with(&["--lockout-ip-threshold=3"]).await;
    app.register("known@example.com", "Known").await;
    let before = app.event_count().await;
    for n in 0..3 {
        let response = login_attempt(&app, &format!("nobody{n}@example.com"), "guess").await;
        assert_eq!(response.status(), 401);
    }
    address_blocked(&app).await;
    assert_eq!(
        app.event_count().await,
        before,
        "an unknown email wrote an event"
    );

    let mut answers = Vec::new();
    for email in ["known@example.com", "unknown@example.com"] {
        let response = login_attempt(&app, email, GOOD_PASSWORD).await;
        assert!(response.headers().contains_key("retry-after"), "{email}");
        let problem = assert_problem(response, 429, "too-many-requests", None).await;
        answers.push((problem["type"].clone(), problem["title"].clone()));
    }
    assert_eq!(answers[0], answers[1]);
}

/// A wrong current password is a guess at the password: it counts towards
/// the user's lockout (a `user.login_failed` the worker acts on) and the
/// address's block, like a failed login.
#[tokio::test]
async fn a_wrong_current_password_counts_like_a_failed_login() {
    let app = spawn_app_with_worker(
        &["--lockout-ip-threshold=100"],
        &["--lockout-threshold=3", "--lockout-window-seconds=60"],
    )
    .await;
    let (user, tokens) = app.user_with_session("guessed@example.com").await;
    let token = tokens["access_token"].as_str().unwrap();
    for _ in 0..3 {
        let response = app
            .request(Method::POST, &format!("/v1/users/{user}/password"), Some(token))
            .json(&json!({"current_password": "a wrong guess", "new_password": "a brand new password"}))
            .send()
            .await
            .unwrap();
        assert_problem(response, 422, "validation-failed", Some("current_password")).await;
    }
    eventually(SHORT, "the user locked by the worker", || async {
        (support::count_events(&app.db, domain::UserEvent::LOCKED.name()).await == 1).then_some(())
    })
    .await;
    assert_eq!(
        support::count_events(&app.db, domain::UserEvent::LOGIN_FAILED.name()).await,
        3
    );
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM login_address_failures")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(failures, 3, "each wrong guess counted for the address");
}

/// The password change is throttled per client like login.
#[tokio::test]
async fn the_password_change_is_rate_limited_like_login() {
    let app = support::spawn_app_with(&["--auth-rate-per-second=1", "--auth-rate-burst=2"]).await;
    let (user, tokens) = app.user_with_session("limited@example.com").await;
    let token = tokens["access_token"].as_str().unwrap();
    // All at once: a loaded machine could otherwise refill the bucket
    // between guesses, each of which verifies a hash.
    let guesses = (0..4).map(|_| {
        app.request(
            Method::POST,
            &format!("/v1/users/{user}/password"),
            Some(token),
        )
        .json(&json!({"current_password": "a wrong guess", "new_password": "a brand new password"}))
        .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .into_iter()
        .map(|response| response.unwrap().status().as_u16())
        .collect();
    assert!(statuses.contains(&429), "never limited: {statuses:?}");
}

/// A burst of wrong guesses from one address, all sent before the first is
/// answered, cannot outrun the address block: each failure is counted
/// before it is answered, so at most the threshold of them are told 401
/// (and learn that a password was wrong) and the rest 429. A client at
/// another address behind the same proxy signs in all along.
#[tokio::test]
async fn a_burst_of_failed_logins_from_one_address_gets_at_most_the_threshold_of_401s() {
    const THRESHOLD: usize = 3;
    const BURST: usize = 12;
    let app = support::spawn_app_with(&[
        "--trusted-proxies=127.0.0.1,::1",
        &format!("--lockout-ip-threshold={THRESHOLD}"),
        "--lockout-window-seconds=600",
    ])
    .await;
    let attacker = "203.0.113.50";
    let bystander = "203.0.113.51";
    let login_from = |address: &'static str, email: String, password: &'static str| {
        app.request(Method::POST, "/v1/auth/login", None)
            .header("x-forwarded-for", address)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    // Each guess names another email, so the per-account bound of the
    // hashing queue does not answer for the block.
    let guesses = (0..BURST).map(|n| {
        login_from(
            attacker,
            format!("guess{n}@example.com"),
            "a wrong guess of a password",
        )
    });
    let (statuses, bystander_status) = tokio::join!(
        futures_util::future::join_all(guesses),
        login_from(bystander, support::ADMIN_EMAIL.to_string(), GOOD_PASSWORD),
    );
    let statuses: Vec<u16> = statuses
        .into_iter()
        .map(|response| response.unwrap().status().as_u16())
        .collect();
    let unauthorized = statuses.iter().filter(|status| **status == 401).count();
    let refused = statuses.iter().filter(|status| **status == 429).count();
    assert!(
        unauthorized <= THRESHOLD,
        "{unauthorized} answered 401: {statuses:?}"
    );
    assert_eq!(unauthorized + refused, BURST, "{statuses:?}");
    assert_eq!(bystander_status.unwrap().status(), 200);

    // Every guess was counted, the attacker stays blocked, the bystander not.
    let failures: i64 =
        sqlx::query_scalar("SELECT count(*) FROM login_address_failures WHERE address = $1")
            .bind(attacker)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(failures, BURST as i64);
    let again = login_from(attacker, support::ADMIN_EMAIL.to_string(), GOOD_PASSWORD)
        .await
        .unwrap();
    assert_problem(again, 429, "too-many-requests", None).await;
    let bystander_again = login_from(bystander, support::ADMIN_EMAIL.to_string(), GOOD_PASSWORD)
        .await
        .unwrap();
    assert_eq!(bystander_again.status(), 200);
}
