//! Sessions in cookies for browsers: `__Host-` cookies, no token in the
//! body, the CSRF check on every cookie-authenticated change (tried from
//! another origin and without any proof), and the rules bearer sessions
//! follow (refresh rotation and reuse, revocation, password change,
//! deactivation, idle expiry).

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::support::{assert_problem, spawn_app_with, TestApp, GOOD_PASSWORD};

const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");

/// `name=value` of each cookie the response sets, and the full lines.
fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect()
}

/// The `Cookie` header a browser would send back.
fn cookie_header(response_headers: &HeaderMap) -> String {
    set_cookies(response_headers)
        .iter()
        .map(|line| line.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

async fn cookie_login(app: &TestApp, email: &str) -> (String, Value) {
    let response = app
        .request(Method::POST, "/v1/auth/login", None)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .json(&json!({"email": email, "password": GOOD_PASSWORD, "session": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookies = cookie_header(response.headers());
    (cookies, response.json().await.unwrap())
}

fn with_cookies(
    app: &TestApp,
    method: Method,
    path: &str,
    cookies: &str,
) -> reqwest::RequestBuilder {
    app.request(method, path, None).header("cookie", cookies)
}

async fn session(app: &TestApp, cookies: &str) -> Response {
    with_cookies(app, Method::GET, "/v1/auth/session", cookies)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cookie_login_sets_host_cookies_and_no_token_in_the_body() {
    let app = spawn_app_with(&[]).await;
    let (id, position) = app.register("browser@example.com", "Browser").await;
    // /v1/auth/session answers from the read model.
    app.await_user(&id, position).await;
    let response = app
        .request(Method::POST, "/v1/auth/login", None)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .json(&json!({"email": "browser@example.com", "password": GOOD_PASSWORD, "session": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let lines = set_cookies(response.headers());
    assert_eq!(lines.len(), 2, "{lines:?}");
    for name in ["__Host-access_token=", "__Host-refresh_token="] {
        let line = lines
            .iter()
            .find(|line| line.starts_with(name))
            .expect(name);
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=",
        ] {
            assert!(line.contains(attribute), "{attribute} missing: {line}");
        }
        assert!(!line.to_ascii_lowercase().contains("domain="), "{line}");
    }
    let cookies = cookie_header(response.headers());
    let body: Value = response.json().await.unwrap();
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "{body}"
    );
    assert!(
        body["session_id"].is_string() && body["expires_in"].is_i64(),
        "{body}"
    );

    let current = session(&app, &cookies).await;
    assert_eq!(current.status(), 200);
    let current: Value = current.json().await.unwrap();
    assert_eq!(current["user"]["id"], id.as_str());
    assert_eq!(current["session_id"], body["session_id"]);
    assert!(current["expires_at"].is_string());
    // Without the cookie there is no session.
    let anonymous = app
        .request(Method::GET, "/v1/auth/session", None)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "unauthorized", None).await;
}

#[tokio::test]
async fn a_cookie_change_needs_proof_of_its_origin_and_a_bearer_change_does_not() {
    let app = spawn_app_with(&["--cors-allowed-origins=https://app.example.com"]).await;
    let (id, position) = app.register("victim@example.com", "Victim").await;
    // /v1/auth/session answers from the read model.
    app.await_user(&id, position).await;
    let (cookies, _) = cookie_login(&app, "victim@example.com").await;
    let attacks: [(&str, &[(&str, &str)]); 5] = [
        ("no proof at all", &[]),
        (
            "a cross-site origin",
            &[("origin", "https://evil.example.net")],
        ),
        (
            "a cross-site fetch",
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example.net"),
            ],
        ),
        (
            "a sibling site",
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://evil.example.com"),
            ],
        ),
        ("an opaque origin", &[("origin", "null")]),
    ];
    let before = app.event_count().await;
    for (what, headers) in attacks {
        let mut requests = vec![
            with_cookies(&app, Method::POST, "/v1/auth/logout", &cookies),
            with_cookies(&app, Method::PATCH, &format!("/v1/users/{id}"), &cookies)
                .json(&json!({"display_name": "Pwned"})),
            with_cookies(&app, Method::POST, "/v1/auth/refresh", &cookies),
            app.request(Method::POST, "/v1/auth/login", None).json(
                &json!({"email": "victim@example.com", "password": GOOD_PASSWORD, "session": "cookie"}),
            ),
        ];
        for request in requests.drain(..) {
            let mut request = request;
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().await.unwrap();
            assert_problem(response, 403, "origin-refused", None).await;
        }
        assert_eq!(
            session(&app, &cookies).await.status(),
            200,
            "{what}: session lost"
        );
    }
    assert_eq!(
        app.event_count().await,
        before,
        "a refused change wrote an event"
    );

    // The allowed front end and the api's own origin pass.
    let response = with_cookies(&app, Method::PATCH, &format!("/v1/users/{id}"), &cookies)
        .header("origin", "https://app.example.com")
        .header("sec-fetch-site", "same-site")
        .json(&json!({"display_name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A bearer token is never sent by a browser on its own: no check.
    let response = app
        .request(Method::GET, "/v1/users/me", Some(&app.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens = crate::support::login(
        &app.client,
        &app.address,
        "victim@example.com",
        GOOD_PASSWORD,
    )
    .await;
    let response = app
        .request(
            Method::POST,
            "/v1/auth/logout",
            tokens["access_token"].as_str(),
        )
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn a_cookie_session_refreshes_and_ends_as_a_bearer_session_does() {
    let app = spawn_app_with(&["--refresh-reuse-interval-seconds=0"]).await;
    let (id, position) = app.register("tabs@example.com", "Tabs").await;
    // /v1/auth/session answers from the read model.
    app.await_user(&id, position).await;

    // Refresh rotates both cookies; the old refresh cookie is then a reuse
    // that revokes the session.
    let (first, _) = cookie_login(&app, "tabs@example.com").await;
    let refreshed = with_cookies(&app, Method::POST, "/v1/auth/refresh", &first)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let second = cookie_header(refreshed.headers());
    assert_ne!(first, second);
    assert_eq!(session(&app, &second).await.status(), 200);
    let reused = with_cookies(&app, Method::POST, "/v1/auth/refresh", &first)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .send()
        .await
        .unwrap();
    assert!(set_cookies(reused.headers())
        .iter()
        .all(|line| line.contains("Max-Age=0")));
    assert_problem(reused, 401, "invalid-refresh-token", None).await;
    assert_problem(session(&app, &second).await, 401, "unauthorized", None).await;

    // Logout ends it and clears the cookies.
    let (cookies, _) = cookie_login(&app, "tabs@example.com").await;
    let logout = with_cookies(&app, Method::POST, "/v1/auth/logout", &cookies)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert!(set_cookies(logout.headers())
        .iter()
        .all(|line| line.contains("Max-Age=0")));
    assert_problem(session(&app, &cookies).await, 401, "unauthorized", None).await;

    // Revoked by an administrator.
    let (cookies, body) = cookie_login(&app, "tabs@example.com").await;
    let session_id = body["session_id"].as_str().unwrap();
    let revoke = app
        .send(
            Method::DELETE,
            &format!("/v1/sessions/{session_id}"),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(revoke.status(), 200);
    assert_problem(session(&app, &cookies).await, 401, "unauthorized", None).await;

    // A password change (with a bearer session) ends the cookie session.
    let (cookies, _) = cookie_login(&app, "tabs@example.com").await;
    let tokens =
        crate::support::login(&app.client, &app.address, "tabs@example.com", GOOD_PASSWORD).await;
    let change = app
        .send(
            Method::POST,
            &format!("/v1/users/{id}/password"),
            tokens["access_token"].as_str().unwrap(),
            Some(json!({"current_password": GOOD_PASSWORD, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(change.status(), 200);
    assert_problem(session(&app, &cookies).await, 401, "unauthorized", None).await;

    // Deactivation ends every session of the user, cookie ones included.
    let (cookies, _) = {
        let response = app
            .request(Method::POST, "/v1/auth/login", None)
            .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
            .json(&json!({"email": "tabs@example.com", "password": "a brand new passphrase", "session": "cookie"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        (cookie_header(response.headers()), ())
    };
    assert_eq!(session(&app, &cookies).await.status(), 200);
    let deactivate = app.post_empty(&format!("/v1/users/{id}/deactivate")).await;
    assert_eq!(deactivate.status(), 200);
    assert_problem(session(&app, &cookies).await, 401, "unauthorized", None).await;
}

#[tokio::test]
async fn an_idle_cookie_session_expires() {
    // Long enough that a loaded machine reads the session before it idles.
    let app = spawn_app_with(&["--session-idle-timeout-seconds=5"]).await;
    // Not waiting for the read model: the session read waits for the user.
    app.register("idle@example.com", "Idle").await;
    let (cookies, _) = cookie_login(&app, "idle@example.com").await;
    assert_eq!(session(&app, &cookies).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(5_500)).await;
    assert_problem(session(&app, &cookies).await, 401, "unauthorized", None).await;
}

#[tokio::test]
async fn a_cookie_session_ends_at_its_absolute_deadline_even_while_in_use() {
    let app = spawn_app_with(&["--session-lifetime-seconds=4"]).await;
    app.register("short@example.com", "Short").await;
    let (cookies, _) = cookie_login(&app, "short@example.com").await;
    // Refreshing keeps it from going idle, not past its lifetime.
    let refreshed = with_cookies(&app, Method::POST, "/v1/auth/refresh", &cookies)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let cookies = cookie_header(refreshed.headers());
    assert_eq!(session(&app, &cookies).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(4_500)).await;
    assert_problem(session(&app, &cookies).await, 401, "unauthorized", None).await;
    let late = with_cookies(&app, Method::POST, "/v1/auth/refresh", &cookies)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 401);
}

#[tokio::test]
async fn a_lockout_ends_a_cookie_session_and_refuses_a_cookie_login() {
    let app = crate::support::spawn_app_with_worker(
        &[],
        &[
            "--lockout-threshold=3",
            "--lockout-window-seconds=60",
            "--lockout-duration-seconds=60",
        ],
    )
    .await;
    app.register("locked@example.com", "Locked").await;
    let (cookies, _) = cookie_login(&app, "locked@example.com").await;
    assert_eq!(session(&app, &cookies).await.status(), 200);
    for _ in 0..3 {
        let response = app
            .request(Method::POST, "/v1/auth/login", None)
            .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
            .json(&json!({"email": "locked@example.com", "password": "not the password at all", "session": "cookie"}))
            .send()
            .await
            .unwrap();
        assert_problem(response, 401, "invalid-credentials", None).await;
    }
    infra::testing::eventually(
        crate::support::SHORT,
        "the lock ends the cookie session",
        || async { (session(&app, &cookies).await.status() == 401).then_some(()) },
    )
    .await;
    let refused = app
        .request(Method::POST, "/v1/auth/login", None)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .json(
            &json!({"email": "locked@example.com", "password": GOOD_PASSWORD, "session": "cookie"}),
        )
        .send()
        .await
        .unwrap();
    assert_problem(refused, 401, "invalid-credentials", None).await;
}

#[tokio::test]
async fn a_session_read_right_after_signing_up_waits_for_the_read_model() {
    let app = spawn_app_with(&[]).await;
    // The relay publishes only what no running transaction can precede: an
    // older transaction left open keeps the registration below out of the
    // read model until it ends.
    let mut older = app.db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *older)
        .await
        .unwrap();
    let (id, _) = app.register("early@example.com", "Early").await;
    let (cookies, _) = cookie_login(&app, "early@example.com").await;
    let projected: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM users_view WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&id).unwrap())
            .fetch_optional(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(projected, None, "the read model already had the user");

    let (read, ()) = tokio::join!(session(&app, &cookies), async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        older.rollback().await.unwrap();
    });
    assert_eq!(read.status(), 200);
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["user"]["id"], id.as_str(), "{body}");
}
