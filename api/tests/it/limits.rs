//! The per-user command limit and the limits on open sign-up, from the
//! attacker's side: a burst of renames of oneself, a sign-up burst with and
//! without a token, email probes by 409, a blocked address signing up; and
//! an administrator creating users, whom the sign-up limits never hold.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    address_blocked, assert_problem, count_events, login_attempt, spawn_app_with, TestApp,
    ADMIN_EMAIL, GOOD_PASSWORD,
};

/// The seconds of `Retry-After`, which a 429 must have.
fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds")
}

/// A 429 `too-many-requests` whose `Retry-After` is within `seconds`.
async fn assert_too_many(response: reqwest::Response, seconds: std::ops::RangeInclusive<u64>) {
    let wait = retry_after(&response);
    assert!(seconds.contains(&wait), "Retry-After {wait}");
    assert_problem(response, 429, "too-many-requests", None).await;
}

fn registration(email: &str) -> Value {
    json!({"email": email, "password": GOOD_PASSWORD, "display_name": "Someone"})
}

fn sign_up(
    app: &TestApp,
    email: &str,
    token: Option<&str>,
) -> impl std::future::Future<Output = reqwest::Response> {
    let request = app
        .request(Method::POST, "/v1/users", token)
        .json(&registration(email));
    async move { request.send().await.expect("sign-up") }
}

async fn rename(app: &TestApp, user: &str, token: &str, name: String) -> reqwest::Response {
    app.request(Method::PATCH, &format!("/v1/users/{user}"), Some(token))
        .json(&json!({"display_name": name}))
        .send()
        .await
        .expect("rename")
}

/// `command_rate_limited_total` as `/metrics` shows it.
async fn commands_refused(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    let prefix = format!("{} ", app::metrics::COMMANDS_RATE_LIMITED);
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map_or(0, |value| value.trim().parse().expect("a counter"))
}

#[tokio::test]
async fn renaming_oneself_past_the_burst_is_refused_and_writes_nothing() {
    let app = spawn_app_with(&["--command-rate-per-second=0.01", "--command-rate-burst=3"]).await;
    let (mallory, tokens) = app.user_with_session("mallory@example.com").await;
    let (alice, alice_tokens) = app.user_with_session("alice@example.com").await;
    let token = tokens["access_token"].as_str().unwrap();
    let refused_before = commands_refused(&app).await;
    let events_before = app.event_count().await;

    // All at once, as an attacker would: the budget holds across
    // concurrent commands (those that collide answer 409, and count).
    let renames = (0..8).map(|n| rename(&app, &mallory, token, format!("Mallory {n}")));
    let mut admitted = 0;
    let mut renamed: i64 = 0;
    for response in join_all(renames).await {
        match response.status().as_u16() {
            200 => {
                admitted += 1;
                renamed += 1;
            }
            409 => admitted += 1,
            // One command every 100 s.
            429 => assert_too_many(response, 1..=100).await,
            other => panic!("a rename answered {other}"),
        }
    }
    assert_eq!(admitted, 3, "the burst");
    let response = rename(&app, &mallory, token, "Mallory again".into()).await;
    assert_too_many(response, 1..=100).await;
    assert_eq!(
        app.event_count().await,
        events_before + renamed,
        "a refused rename wrote an event"
    );
    assert!(commands_refused(&app).await >= refused_before + 6);

    // Another user's budget is their own.
    let alice_token = alice_tokens["access_token"].as_str().unwrap();
    let response = rename(&app, &alice, alice_token, "Alice B".into()).await;
    assert_eq!(response.status(), 200);
    // Reading is not limited, and a spent budget still ends a session.
    assert_eq!(app.get_as("/v1/users/me", token).await.status(), 200);
    let response = app
        .request(Method::POST, "/v1/auth/logout", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

/// An administrator's `POST /v1/users` is their command, not a sign-up: the
/// address's sign-up budget and block do not apply, their command limit does.
#[tokio::test]
async fn an_administrator_creating_users_meets_only_their_command_limit() {
    let app = spawn_app_with(&[
        "--signup-mode=open",
        "--auth-rate-per-second=1",
        "--auth-rate-burst=2",
        "--lockout-ip-threshold=2",
        "--command-rate-per-second=0.01",
        "--command-rate-burst=12",
    ])
    .await;
    // Taken emails: sign-ups would count these toward the address's block.
    for _ in 0..2 {
        let response = app.post_json("/v1/users", &registration(ADMIN_EMAIL)).await;
        assert_problem(response, 409, "conflict", None).await;
    }
    let mut created = Vec::new();
    for n in 0..10 {
        let email = format!("staff{n}@example.com");
        let response = app.post_json("/v1/users", &registration(&email)).await;
        assert_eq!(response.status(), 201, "{email}");
        let body: Value = response.json().await.unwrap();
        created.push(body["id"].as_str().unwrap().to_owned());
    }
    let response = app
        .post_json("/v1/users", &registration("one-more@example.com"))
        .await;
    assert_too_many(response, 1..=100).await;

    let counted: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pending_login_failures) \
              + (SELECT count(*) FROM login_address_failures)",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        counted, 0,
        "the administrator's 409s counted for the address"
    );
    let actor: Option<String> = sqlx::query_scalar(&format!(
        "SELECT metadata->>'{}' FROM events WHERE aggregate_id = $1 AND event_type = $2",
        bus::metadata_keys::ACTOR_ID
    ))
    .bind(&created[0])
    .bind(domain::UserEvent::REGISTERED.name())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(actor.as_deref(), Some(app.admin_id.as_str()));

    // Sign-ups from the same address are still limited.
    let sign_ups = (0..6).map(|n| sign_up(&app, &format!("visitor{n}@example.com"), None));
    let limited = join_all(sign_ups)
        .await
        .iter()
        .filter(|response| response.status() == 429)
        .count();
    assert!(limited >= 3, "only {limited} of 6 sign-ups limited");
}

#[tokio::test]
async fn a_sign_up_burst_from_one_address_is_refused_with_or_without_a_token() {
    let app = spawn_app_with(&[
        "--signup-mode=open",
        "--auth-rate-per-second=1",
        "--auth-rate-burst=2",
    ])
    .await;
    // Signed in, but without users:write: a sign-up like anyone's.
    let (_, tokens) = app.user_with_session("plain@example.com").await;
    let plain = tokens["access_token"].as_str().unwrap();
    let registered = domain::UserEvent::REGISTERED.name();
    let registered_before = count_events(&app.db, registered).await;

    let mut created: i64 = 0;
    for (who, token) in [("anonymous", None), ("plain", Some(plain))] {
        let sign_ups = (0..8).map(|n| sign_up(&app, &format!("{who}{n}@example.com"), token));
        let mut limited = 0;
        for response in join_all(sign_ups).await {
            match response.status().as_u16() {
                201 => created += 1,
                429 => {
                    limited += 1;
                    assert_too_many(response, 1..=2).await;
                }
                other => panic!("a sign-up by {who} answered {other}"),
            }
        }
        assert!(limited >= 3, "{who}: only {limited} of 8 sign-ups limited");
    }
    assert_eq!(
        count_events(&app.db, registered).await,
        registered_before + created
    );
    // A made-up token is no way around the limit either.
    let response = sign_up(&app, "forged@example.com", Some("not-a-token")).await;
    assert_problem(response, 401, "unauthorized", None).await;
}

/// `409 conflict` on sign-up says an email has an account: each counts
/// toward the address's block like a failed login, so probing emails ends
/// in the block, and then logins from the address are refused too.
#[tokio::test]
async fn email_probes_by_409_block_the_address_and_then_its_logins() {
    let app = spawn_app_with(&["--signup-mode=open", "--lockout-ip-threshold=3"]).await;
    app.register("taken@example.com", "Taken").await;
    for _ in 0..3 {
        let response = sign_up(&app, "taken@example.com", None).await;
        assert_problem(response, 409, "conflict", None).await;
    }
    address_blocked(&app).await;
    // Even the right password.
    let response = login_attempt(&app, ADMIN_EMAIL, GOOD_PASSWORD).await;
    assert_too_many(response, 1..=900).await;
    let response = sign_up(&app, "taken@example.com", None).await;
    assert_too_many(response, 1..=900).await;
}

#[tokio::test]
async fn a_blocked_address_cannot_sign_up() {
    let app = spawn_app_with(&["--signup-mode=open", "--lockout-ip-threshold=3"]).await;
    for n in 0..3 {
        let response = login_attempt(&app, &format!("nobody{n}@example.com"), "a guess").await;
        assert_eq!(response.status(), 401);
    }
    address_blocked(&app).await;
    let (events, claims) = (app.event_count().await, app.claim_count().await);

    let response = sign_up(&app, "newcomer@example.com", None).await;
    assert_too_many(response, 1..=900).await;
    assert_eq!(app.event_count().await, events, "a refused sign-up wrote");
    assert_eq!(app.claim_count().await, claims, "a refused sign-up claimed");
    // The block is on sign-ups, not on an administrator's commands.
    let response = app
        .post_json("/v1/users", &registration("hired@example.com"))
        .await;
    assert_eq!(response.status(), 201);
}
