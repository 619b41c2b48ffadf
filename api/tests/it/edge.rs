//! The HTTP edge seen by browsers and proxies: security headers on every
//! response, CORS for allowed origins only, and the client address behind
//! trusted proxies. Each rule is tried from the attacker's side too.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_problem, spawn_app, spawn_app_with, TestApp, ADMIN_EMAIL, SHORT};

const FRONT_END: &str = "https://app.example.com";
const ELSEWHERE: &str = "https://evil.example.net";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    assert_eq!(
        header(headers, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains"),
        "{what}"
    );
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(headers, "content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'"),
        "{what}"
    );
    assert_eq!(
        header(headers, "referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_nothing_personal_is_cached() {
    let app = spawn_app().await;
    let login = app
        .request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"email": ADMIN_EMAIL, "password": crate::support::GOOD_PASSWORD}))
        .send()
        .await
        .unwrap();
    let no_token = app
        .request(Method::GET, "/v1/users/me", None)
        .send()
        .await
        .unwrap();
    let control = app
        .request(Method::GET, "/v1/users?email=%00", None)
        .send()
        .await
        .unwrap();
    let responses = [
        ("login (tokens)", login),
        ("GET /v1/users/me", app.get("/v1/users/me").await),
        ("GET /v1/users", app.get("/v1/users").await),
        ("401", no_token),
        ("400 from a middleware", control),
        ("404", app.get("/nowhere").await),
        (
            "405",
            app.request(Method::PUT, "/v1/users", None)
                .send()
                .await
                .unwrap(),
        ),
        ("GET /openapi.json", app.get("/openapi.json").await),
        ("GET /health/ready", app.get("/health/ready").await),
    ];
    for (what, response) in responses {
        assert_security_headers(response.headers(), what);
        assert_eq!(
            header(response.headers(), "cache-control"),
            Some("no-store"),
            "{what}"
        );
    }
    // The public keys are public and cacheable; the other headers still apply.
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_security_headers(jwks.headers(), "jwks");
    assert_eq!(
        header(jwks.headers(), "cache-control"),
        Some("public, max-age=300")
    );
}

#[tokio::test]
async fn strict_transport_security_is_configurable_and_can_be_left_out() {
    let app = spawn_app_with(&["--strict-transport-security=max-age=60"]).await;
    let response = app.get("/health/live").await;
    assert_eq!(
        header(response.headers(), "strict-transport-security"),
        Some("max-age=60")
    );
    let app = spawn_app_with(&["--strict-transport-security="]).await;
    let response = app.get("/health/live").await;
    assert_eq!(
        header(response.headers(), "strict-transport-security"),
        None
    );
    assert_eq!(
        header(response.headers(), "x-content-type-options"),
        Some("nosniff")
    );
}

fn preflight(app: &TestApp, origin: &str, method: &str, headers: &str) -> reqwest::RequestBuilder {
    app.request(Method::OPTIONS, "/v1/users/me", None)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn an_allowed_origin_is_answered_with_credentials_and_no_other_origin_gets_cors_headers() {
    let app = spawn_app_with(&[&format!(
        "--cors-allowed-origins={FRONT_END},http://localhost:3000"
    )])
    .await;

    let allowed = preflight(&app, FRONT_END, "PATCH", "content-type, authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(
        header(headers, "access-control-allow-origin"),
        Some(FRONT_END)
    );
    assert_eq!(
        header(headers, "access-control-allow-credentials"),
        Some("true")
    );
    let methods = header(headers, "access-control-allow-methods").unwrap();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{method} not in {methods}");
    }
    let allowed_headers = header(headers, "access-control-allow-headers").unwrap();
    assert!(allowed_headers.contains("content-type") && allowed_headers.contains("authorization"));
    assert!(header(headers, "access-control-max-age").is_some());
    assert_security_headers(headers, "preflight");

    // The actual request names the origin, never `*`, and exposes the api's headers.
    let response = app
        .request(Method::GET, "/v1/users/me", Some(&app.admin_token))
        .header("origin", FRONT_END)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        Some(FRONT_END)
    );
    assert_eq!(
        header(response.headers(), "access-control-allow-credentials"),
        Some("true")
    );
    let exposed = header(response.headers(), "access-control-expose-headers").unwrap();
    assert!(exposed.contains("Projection-Position"), "{exposed}");
    assert!(header(response.headers(), "vary")
        .unwrap()
        .contains("Origin"));

    // An origin not on the list: the preflight is refused, nothing says CORS.
    for (origin, method, headers) in [
        (ELSEWHERE, "GET", "authorization"),
        ("https://app.example.com.evil.net", "GET", "authorization"),
        ("http://app.example.com", "GET", "authorization"),
        ("null", "GET", "authorization"),
    ] {
        let refused = preflight(&app, origin, method, headers)
            .send()
            .await
            .unwrap();
        assert!(
            cors_headers(refused.headers()).is_empty(),
            "{origin}: {:?}",
            refused.headers()
        );
        assert_problem(refused, 403, "origin-refused", None).await;
    }
    // An allowed origin asking for a method or header the api does not take.
    for (method, headers) in [("TRACE", "authorization"), ("GET", "x-evil")] {
        let refused = preflight(&app, FRONT_END, method, headers)
            .send()
            .await
            .unwrap();
        assert!(cors_headers(refused.headers()).is_empty());
        assert_problem(refused, 403, "origin-refused", None).await;
    }
    // Requests from elsewhere, or with no Origin, get no CORS header at all.
    for origin in [Some(ELSEWHERE), None] {
        let mut request = app.request(Method::GET, "/v1/users/me", Some(&app.admin_token));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(cors_headers(response.headers()).is_empty(), "{origin:?}");
    }
}

#[tokio::test]
async fn without_an_allowlist_no_origin_is_allowed() {
    let app = spawn_app().await;
    let refused = preflight(&app, FRONT_END, "GET", "authorization")
        .send()
        .await
        .unwrap();
    assert!(cors_headers(refused.headers()).is_empty());
    assert_problem(refused, 403, "origin-refused", None).await;
}

#[test]
fn a_wildcard_or_a_url_with_a_path_is_no_allowed_origin() {
    for refused in ["*", "https://app.example.com/app", "app.example.com"] {
        let parsed = <api::settings::Cli as clap::Parser>::try_parse_from([
            "api",
            &format!("--cors-allowed-origins={refused}"),
        ]);
        assert!(parsed.is_err(), "{refused} accepted");
    }
}

// ---- Behind a reverse proxy ----

/// Login requests (refused at once: not JSON) sent as if forwarded for each
/// address; how many the rate limit answered 429.
async fn rate_limited(app: &TestApp, forwarded_for: &[&str]) -> usize {
    let mut limited = 0;
    for address in forwarded_for {
        let response = app
            .request(Method::POST, "/v1/auth/login", None)
            .header("x-forwarded-for", *address)
            .body("not json")
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited += 1;
        } else {
            assert_eq!(response.status(), 415);
        }
    }
    limited
}

const EACH_ITS_OWN: [&str; 6] = [
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.3",
    "203.0.113.4",
    "203.0.113.5",
    "203.0.113.6",
];

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app_with(&["--auth-rate-per-second=1", "--auth-rate-burst=3"]).await;
    assert_eq!(login_ip(&app, "203.0.113.77").await, "127.0.0.1");
    // Every request comes from the test's own address, whatever it claims.
    assert!(rate_limited(&app, &EACH_ITS_OWN).await >= 2);
    // Trusting some other proxy does not make the test's address one.
    let app = spawn_app_with(&[
        "--auth-rate-per-second=1",
        "--auth-rate-burst=3",
        "--trusted-proxies=10.0.0.0/8",
    ])
    .await;
    assert!(rate_limited(&app, &EACH_ITS_OWN).await >= 2);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_counted_and_recorded_alone() {
    let app = spawn_app_with(&[
        "--auth-rate-per-second=1",
        "--auth-rate-burst=3",
        "--trusted-proxies=127.0.0.1,::1",
    ])
    .await;
    // The session and its events record the forwarded client.
    assert_eq!(login_ip(&app, "203.0.113.77").await, "203.0.113.77");
    assert_eq!(rate_limited(&app, &EACH_ITS_OWN).await, 0);
    // One client behind the proxy still has one bucket, and a hop it wrote
    // itself (left of the proxy's) does not change that.
    let same_client: Vec<&str> = (0..6).map(|_| "198.51.100.1, 203.0.113.9").collect();
    assert!(rate_limited(&app, &same_client).await >= 2);
    // A failed login counts against the forwarded client's address.
    let response = app
        .request(Method::POST, "/v1/auth/login", None)
        .header("x-forwarded-for", "2001:db8::7")
        .json(&json!({"email": ADMIN_EMAIL, "password": "not the password at all"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "invalid-credentials", None).await;
    // Recorded off the response path.
    let addresses = infra::testing::eventually(SHORT, "failure recorded", || async {
        let addresses: Vec<String> =
            sqlx::query_scalar("SELECT address FROM login_address_failures")
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
        (!addresses.is_empty()).then_some(addresses)
    })
    .await;
    assert!(
        addresses
            .iter()
            .all(|address| address.starts_with("2001:db8:")),
        "{addresses:?}"
    );
}

/// Logs the admin in through a proxy that says the client is `forwarded`:
/// the `request_ip` the session's first event recorded.
async fn login_ip(app: &TestApp, forwarded: &str) -> String {
    login_ip_with(app, &[("x-forwarded-for", forwarded.to_string())]).await
}

/// Logs the admin in with these headers: the `request_ip` the session's
/// first event recorded.
async fn login_ip_with(app: &TestApp, headers: &[(&str, String)]) -> String {
    let mut request = app.request(Method::POST, "/v1/auth/login", None);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request
        .json(&json!({"email": ADMIN_EMAIL, "password": crate::support::GOOD_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let session_id = tokens["session_id"].as_str().unwrap();
    sqlx::query_scalar(
        "SELECT metadata ->> 'request_ip' FROM events \
         WHERE aggregate_type = 'session' AND aggregate_id = $1 AND sequence = 1",
    )
    .bind(session_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

// ---- A client's own forwarding header, behind a proxy that sets the other ----

/// A trusted proxy that sets one forwarding header to the real client and
/// passes on the other one as the client wrote it.
#[derive(Clone, Copy)]
struct Proxy {
    /// The `--client-address-header` the operator configured.
    setting: &'static str,
    /// The header the proxy overwrites with the real client.
    sets: &'static str,
    /// The header the proxy passes on untouched: the client's.
    passes_on: &'static str,
}

const NGINX_X_FORWARDED_FOR: Proxy = Proxy {
    setting: "x-forwarded-for",
    sets: "x-forwarded-for",
    passes_on: "forwarded",
};

const PROXY_SETTING_FORWARDED: Proxy = Proxy {
    setting: "forwarded",
    sets: "forwarded",
    passes_on: "x-forwarded-for",
};

/// The header's value naming `address`.
fn naming(header: &str, address: &str) -> String {
    if header == "forwarded" {
        format!("for={address}")
    } else {
        address.to_string()
    }
}

/// The address block's threshold in these tests.
const THRESHOLD: usize = 3;

async fn behind(proxy: Proxy) -> TestApp {
    spawn_app_with(&[
        "--trusted-proxies=127.0.0.1,::1",
        &format!("--client-address-header={}", proxy.setting),
        &format!("--lockout-ip-threshold={THRESHOLD}"),
        "--lockout-window-seconds=600",
    ])
    .await
}

/// A wrong-password login from `real` (as the proxy says) that claims to
/// come from `claimed` in the header the proxy passes on; its status.
async fn spoofed_failure(app: &TestApp, proxy: Proxy, real: &str, claimed: &str) -> u16 {
    app.request(Method::POST, "/v1/auth/login", None)
        .header(proxy.sets, naming(proxy.sets, real))
        .header(proxy.passes_on, naming(proxy.passes_on, claimed))
        .json(&json!({"email": ADMIN_EMAIL, "password": "not the password at all"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn counted_addresses(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT address FROM login_address_failures ORDER BY address")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

async fn is_blocked(app: &TestApp, address: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM login_ip_blocks WHERE ip = $1 AND blocked_until > now())",
    )
    .bind(address)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

/// An attacker behind the proxy rotates the address in the header the proxy
/// passes on: the session records the proxy's address, every failure counts
/// for the attacker's real address, and the block catches it.
async fn rotating_the_other_header_does_not_escape_the_block(proxy: Proxy) {
    let app = behind(proxy).await;
    let recorded = login_ip_with(
        &app,
        &[
            (proxy.sets, naming(proxy.sets, "203.0.113.77")),
            (proxy.passes_on, naming(proxy.passes_on, "198.51.100.77")),
        ],
    )
    .await;
    assert_eq!(recorded, "203.0.113.77", "the session's address");

    let attacker = "203.0.113.10";
    for n in 0..THRESHOLD {
        let status = spoofed_failure(&app, proxy, attacker, &format!("198.51.100.{n}")).await;
        assert!(status == 401 || status == 429, "{status}");
    }
    infra::testing::eventually(SHORT, "the attacker's real address blocked", || async {
        is_blocked(&app, attacker).await.then_some(())
    })
    .await;
    assert_eq!(
        spoofed_failure(&app, proxy, attacker, "198.51.100.99").await,
        429,
        "a fresh claimed address escaped the block"
    );
    let addresses = counted_addresses(&app).await;
    assert!(
        addresses.iter().all(|address| address == attacker),
        "{addresses:?}"
    );
}

/// An attacker names a victim in the header the proxy passes on: the
/// failures count for the attacker, and the victim still logs in.
async fn naming_a_victim_in_the_other_header_does_not_block_it(proxy: Proxy) {
    let app = behind(proxy).await;
    let victim = "192.0.2.200";
    let attacker = "203.0.113.11";
    for _ in 0..THRESHOLD + 1 {
        let status = spoofed_failure(&app, proxy, attacker, victim).await;
        assert!(status == 401 || status == 429, "{status}");
    }
    infra::testing::eventually(SHORT, "every failure counted", || async {
        (counted_addresses(&app).await.len() >= THRESHOLD).then_some(())
    })
    .await;
    assert!(!is_blocked(&app, victim).await, "the victim is blocked");
    let addresses = counted_addresses(&app).await;
    assert!(
        addresses.iter().all(|address| address == attacker),
        "{addresses:?}"
    );
    // The victim, behind the same proxy, logs in.
    let recorded = login_ip_with(&app, &[(proxy.sets, naming(proxy.sets, victim))]).await;
    assert_eq!(recorded, victim);
}

#[tokio::test]
async fn behind_a_proxy_setting_x_forwarded_for_a_clients_own_forwarded_does_not_escape_the_block()
{
    rotating_the_other_header_does_not_escape_the_block(NGINX_X_FORWARDED_FOR).await;
}

#[tokio::test]
async fn behind_a_proxy_setting_x_forwarded_for_a_clients_own_forwarded_cannot_block_a_victim() {
    naming_a_victim_in_the_other_header_does_not_block_it(NGINX_X_FORWARDED_FOR).await;
}

#[tokio::test]
async fn with_the_forwarded_header_set_a_clients_own_x_forwarded_for_does_not_escape_the_block() {
    rotating_the_other_header_does_not_escape_the_block(PROXY_SETTING_FORWARDED).await;
}

#[tokio::test]
async fn with_the_forwarded_header_set_a_clients_own_x_forwarded_for_cannot_block_a_victim() {
    naming_a_victim_in_the_other_header_does_not_block_it(PROXY_SETTING_FORWARDED).await;
}

#[test]
fn the_client_address_header_is_one_of_two() {
    for (value, accepted) in [
        ("x-forwarded-for", true),
        ("forwarded", true),
        ("x-real-ip", false),
    ] {
        let parsed = <api::settings::Cli as clap::Parser>::try_parse_from([
            "api",
            &format!("--client-address-header={value}"),
        ]);
        assert_eq!(parsed.is_ok(), accepted, "{value}");
    }
}
