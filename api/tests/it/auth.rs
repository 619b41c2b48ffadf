//! Authentication end to end on real PostgreSQL and RabbitMQ: login,
//! refresh rotation and reuse, logout, forged and tampered access tokens,
//! signing key rotation, rate limits, the bounded argon2 queue, rehash on
//! login, sign-up mode, and the 401 every protected route gives without a
//! token. (Permissions, sessions across processes, lockout and expiry
//! through the worker, bootstrap and log secrets are in `access.rs`.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::{
    api_settings, assert_problem, key_file, login, revocation_reasons, spawn_app, spawn_app_with,
    start_api, TestApp, ADMIN_EMAIL, GOOD_PASSWORD, SHORT,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::join_all;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

const WRONG_PASSWORD: &str = "not the right password at all";

// ---------------------------------------------------------------- login

#[tokio::test]
async fn login_issues_a_bearer_pair_that_reads_me() {
    let app = spawn_app().await;
    let (id, tokens) = app.user_with_session("ada@example.com").await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().expect("access_token");
    assert_eq!(access.split('.').count(), 3, "a JWS compact token");
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token");
    assert!(refresh.len() > 40, "256 random bits and a session id");
    let session_id = tokens["session_id"].as_str().expect("session_id");
    uuid::Uuid::parse_str(session_id).expect("session_id is a uuid");

    let claims = jwt_claims(access);
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["sid"], session_id);
    assert_eq!(claims["iss"], "identity-service");
    assert_eq!(claims["aud"], "identity-api");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 900);
    assert!(claims["jti"].is_string() && claims["roles"].is_array());
    // How and when the person authenticated (RFC 8176, OpenID Connect).
    assert_eq!(claims["amr"], json!(["pwd"]));
    let auth_time = claims["auth_time"].as_i64().unwrap();
    assert!((auth_time - claims["iat"].as_i64().unwrap()).abs() <= 1);

    // A refresh keeps when the person authenticated: it proves nothing new.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let response = crate::auth::refresh(&app, refresh).await;
    assert_eq!(response.status(), 200);
    let refreshed: Value = response.json().await.unwrap();
    let again = jwt_claims(refreshed["access_token"].as_str().unwrap());
    assert_eq!(again["auth_time"], auth_time);
    assert_eq!(again["amr"], json!(["pwd"]));
    assert!(again["iat"].as_i64().unwrap() > auth_time);

    let me = me_when_projected(&app, access).await;
    assert_eq!(me["id"], id);
    assert_eq!(me["email"], "ada@example.com");
}

#[tokio::test]
async fn every_refused_login_is_the_same_401_and_costs_one_argon2_verification() {
    let app = spawn_app().await;
    app.register("ada@example.com", "Ada").await;
    let (bob, _) = app.register("bob@example.com", "Bob").await;
    let response = app.post_empty(&format!("/v1/users/{bob}/deactivate")).await;
    assert_eq!(response.status(), 200, "deactivate bob");
    // A process of its own: its metrics count only these requests, not the
    // logins of the tests running beside this one in this test binary.
    let api = start_api(&app.db, &app.topology).await;
    let client = reqwest::Client::new();

    let cases = [
        ("wrong password", "ada@example.com", WRONG_PASSWORD),
        ("unknown email", "nobody@example.com", GOOD_PASSWORD),
        (
            "unknown email, other case",
            "NOBODY@example.com",
            WRONG_PASSWORD,
        ),
        ("deactivated user", "bob@example.com", GOOD_PASSWORD),
    ];
    let mut bodies = Vec::new();
    for (case, email, password) in cases {
        let before = verifications(&client, &api.address).await;
        let response = client
            .post(format!("{}/v1/auth/login", api.address))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer",
            "{case}: WWW-Authenticate"
        );
        let body = assert_problem(response, 401, "invalid-credentials", None).await;
        let after = verifications(&client, &api.address).await;
        assert_eq!(after - before, 1, "{case}: one argon2 verification");
        bodies.push((case, body));
    }
    let (_, first) = &bodies[0];
    for (case, body) in &bodies[1..] {
        for field in ["type", "title", "status", "detail"] {
            assert_eq!(body[field], first[field], "{case}: {field} differs");
        }
        assert_eq!(body, first, "{case}: the whole body differs");
    }
    // The right password still works through the same process.
    login(&client, &api.address, "ada@example.com", GOOD_PASSWORD).await;
}

// ---------------------------------------------------------------- refresh

#[tokio::test]
async fn refresh_rotates_and_reuse_of_a_rotated_token_revokes_the_session() {
    let app = spawn_app_with(&["--refresh-reuse-interval-seconds=0"]).await;
    let (_, first) = app.user_with_session("ada@example.com").await;
    let session_id = first["session_id"].as_str().unwrap().to_string();
    let first_access = first["access_token"].as_str().unwrap();
    let first_refresh = first["refresh_token"].as_str().unwrap();

    let response = refresh(&app, first_refresh).await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(second["expires_in"], 900);
    assert_eq!(second["session_id"], session_id.as_str(), "same session");
    let second_access = second["access_token"].as_str().unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(second_refresh, first_refresh, "refresh token rotated");
    assert_ne!(second_access, first_access, "new access token");
    assert_eq!(jwt_claims(second_access)["sid"], session_id.as_str());
    me_when_projected(&app, second_access).await;
    assert_eq!(
        session_events(&app, &session_id, domain::SessionEvent::REFRESHED.name()).await,
        1
    );

    // The rotated token again: refused, and the whole session is revoked.
    let response = refresh(&app, first_refresh).await;
    assert_problem(response, 401, "invalid-refresh-token", None).await;
    let reasons: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT payload -> 'Revoked' ->> 'reason' FROM events \
         WHERE aggregate_type = 'session' AND aggregate_id = $1 AND event_type = '{}'",
        domain::SessionEvent::REVOKED.name()
    ))
    .bind(&session_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(reasons, ["refresh_token_reused"]);

    // The newest refresh token and every access token of the session are dead.
    let response = refresh(&app, second_refresh).await;
    assert_problem(response, 401, "invalid-refresh-token", None).await;
    for access in [first_access, second_access] {
        let response = app.get_as("/v1/users/me", access).await;
        assert_problem(response, 401, "unauthorized", None).await;
    }
    assert_eq!(
        session_events(&app, &session_id, domain::SessionEvent::REFRESHED.name()).await,
        1,
        "no refresh after the revocation"
    );
}

#[tokio::test]
async fn a_refresh_token_that_is_not_one_is_refused() {
    let app = spawn_app().await;
    let (_, tokens) = app.user_with_session("ada@example.com").await;
    let session_id = tokens["session_id"].as_str().unwrap();
    let real = tokens["refresh_token"].as_str().unwrap();
    let forged_secret = format!("{session_id}.{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    let other_session = format!(
        "{}.{}",
        uuid::Uuid::now_v7(),
        real.split_once('.').unwrap().1
    );
    for bad in [
        "garbage",
        "",
        forged_secret.as_str(),
        other_session.as_str(),
        tokens["access_token"].as_str().unwrap(),
    ] {
        let response = refresh(&app, bad).await;
        assert_problem(response, 401, "invalid-refresh-token", None).await;
    }
    // A guessed secret for a real session is refused without ending it:
    // knowing a session id must not let anyone log its owner out.
    assert_eq!(
        session_events(&app, session_id, domain::SessionEvent::REVOKED.name()).await,
        0
    );
    let response = refresh(&app, real).await;
    assert_eq!(response.status(), 200, "the real refresh token still works");
}

/// Refreshes racing with one token, as from two tabs.
const RACING_REFRESHES: usize = 5;

#[tokio::test]
async fn concurrent_refreshes_with_one_token_all_succeed_within_the_reuse_interval() {
    let app = spawn_app_with(&["--refresh-reuse-interval-seconds=30"]).await;
    let (_, tokens) = app.user_with_session("ada@example.com").await;
    let session_id = tokens["session_id"].as_str().unwrap();
    let shared = tokens["refresh_token"].as_str().unwrap();

    let responses = join_all((0..RACING_REFRESHES).map(|_| refresh(&app, shared))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200; RACING_REFRESHES], "no 401, no 409 retry");
    let pairs: Vec<Value> = join_all(responses.into_iter().map(|r| r.json::<Value>()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let issued: BTreeSet<&str> = pairs
        .iter()
        .map(|pair| pair["refresh_token"].as_str().unwrap())
        .collect();
    assert_eq!(issued.len(), RACING_REFRESHES, "each got its own token");
    assert!(revocation_reasons(&app.db, session_id).await.is_empty());
    assert_eq!(
        session_events(&app, session_id, domain::SessionEvent::REFRESHED.name()).await,
        RACING_REFRESHES as i64
    );

    // Every pair handed out works: each access token, and each refresh
    // token (rotated away by the others less than the interval ago).
    for pair in &pairs {
        me_when_projected(&app, pair["access_token"].as_str().unwrap()).await;
    }
    for refresh_token in &issued {
        let response = refresh(&app, refresh_token).await;
        assert_eq!(response.status(), 200, "a racing client's token works");
    }
    assert!(revocation_reasons(&app.db, session_id).await.is_empty());
}

#[tokio::test]
async fn without_a_reuse_interval_concurrent_refreshes_revoke_the_session_and_never_ask_to_retry() {
    let app = spawn_app_with(&["--refresh-reuse-interval-seconds=0"]).await;
    let (_, tokens) = app.user_with_session("ada@example.com").await;
    let session_id = tokens["session_id"].as_str().unwrap();
    let shared = tokens["refresh_token"].as_str().unwrap();

    let responses = join_all((0..RACING_REFRESHES).map(|_| refresh(&app, shared))).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    let mut expected = vec![401; RACING_REFRESHES];
    expected[0] = 200;
    assert_eq!(
        statuses, expected,
        "one rotation wins; the others are reuses"
    );
    assert_eq!(
        revocation_reasons(&app.db, session_id).await,
        ["refresh_token_reused"]
    );
    assert_eq!(
        session_events(&app, session_id, domain::SessionEvent::REFRESHED.name()).await,
        1
    );
}

#[tokio::test]
async fn reuse_after_the_reuse_interval_revokes_the_session() {
    let app = spawn_app_with(&["--refresh-reuse-interval-seconds=1"]).await;
    let (_, tokens) = app.user_with_session("ada@example.com").await;
    let session_id = tokens["session_id"].as_str().unwrap();
    let first = tokens["refresh_token"].as_str().unwrap();
    let response = refresh(&app, first).await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = refresh(&app, first).await;
    assert_problem(response, 401, "invalid-refresh-token", None).await;
    assert_eq!(
        revocation_reasons(&app.db, session_id).await,
        ["refresh_token_reused"]
    );
    let response = refresh(&app, second["refresh_token"].as_str().unwrap()).await;
    assert_problem(response, 401, "invalid-refresh-token", None).await;
}

// ---------------------------------------------------------------- logout

#[tokio::test]
async fn logout_ends_the_session_for_access_and_refresh_tokens() {
    let app = spawn_app().await;
    let (_, tokens) = app.user_with_session("ada@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let session_id = tokens["session_id"].as_str().unwrap();
    me_when_projected(&app, access).await;

    let response = app
        .request(Method::POST, "/v1/auth/logout", Some(access))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let reasons: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT payload -> 'Revoked' ->> 'reason' FROM events \
         WHERE aggregate_type = 'session' AND aggregate_id = $1 AND event_type = '{}'",
        domain::SessionEvent::REVOKED.name()
    ))
    .bind(session_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(reasons, ["logged_out"]);

    let response = app.get_as("/v1/users/me", access).await;
    assert_problem(response, 401, "unauthorized", None).await;
    let response = refresh(&app, refresh_token).await;
    assert_problem(response, 401, "invalid-refresh-token", None).await;
    // Logging out twice: the token is already refused.
    let response = app
        .request(Method::POST, "/v1/auth/logout", Some(access))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized", None).await;
    // The administrator's own session is untouched.
    assert_eq!(app.get("/v1/users/me").await.status(), 200);
}

// ---------------------------------------------------------------- tokens

#[tokio::test]
async fn access_tokens_are_eddsa_with_a_kid_published_in_the_jwks() {
    let app = spawn_app().await;
    let header = jsonwebtoken::decode_header(&app.admin_token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let kid = header.kid.expect("kid");
    let jwks = jwks(&app.client, &app.address).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], kid.as_str());
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(keys[0].get("d").is_none(), "no private part published");
}

/// A token's `sid` counts only for its own `sub`: the administrator's id
/// beside a plain user's live session is refused, even signed with the real
/// key (revoking the administrator's sessions must stop every such token).
#[tokio::test]
async fn a_token_naming_another_users_session_is_refused() {
    let app = spawn_app().await;
    let kid = jsonwebtoken::decode_header(&app.admin_token)
        .unwrap()
        .kid
        .unwrap();
    let real_key = EncodingKey::from_ed_pem(&std::fs::read(key_file(&app.db)).unwrap()).unwrap();
    let (_, plain) = app.user_with_session("plain@example.com").await;
    let plain_sid = jwt_claims(plain["access_token"].as_str().unwrap())["sid"].clone();
    let admin = jwt_claims(&app.admin_token);

    let control = sign_eddsa(&real_key, Some(&kid), &fresh(&admin));
    assert_eq!(app.get_as("/v1/users", &control).await.status(), 200);
    let mut borrowed = admin.clone();
    borrowed["sid"] = plain_sid;
    let token = sign_eddsa(&real_key, Some(&kid), &fresh(&borrowed));
    for path in ["/v1/users/me", "/v1/users"] {
        let response = app.get_as(path, &token).await;
        assert_problem(response, 401, "unauthorized", None).await;
    }
}

#[tokio::test]
async fn forged_and_tampered_access_tokens_are_refused() {
    let app = spawn_app().await;
    let real = app.admin_token.clone();
    let kid = jsonwebtoken::decode_header(&real).unwrap().kid.unwrap();
    let claims = jwt_claims(&real);
    let private_pem = std::fs::read(key_file(&app.db)).expect("signing key");
    let public_pem = std::fs::read(format!("{}.pub", key_file(&app.db))).expect("public key");
    let real_key = EncodingKey::from_ed_pem(&private_pem).unwrap();
    let jwks = jwks(&app.client, &app.address).await;
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_string();
    let raw_public = URL_SAFE_NO_PAD.decode(&x).unwrap();
    assert_eq!(raw_public.len(), 32);

    // The control: a token signed here with the real key and the real claims
    // is accepted, so each refusal below is for the one thing changed.
    let control = sign_eddsa(&real_key, Some(&kid), &fresh(&claims));
    assert_eq!(app.get_as("/v1/users/me", &control).await.status(), 200);

    let mut forged: Vec<(&str, String)> = Vec::new();

    // alg none, unsigned.
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        forged.push(("alg none", unsigned(&header, &fresh(&claims))));
    }
    // HS256 keyed with the public key: PEM text, raw bytes, JWKS `x`.
    for (what, secret) in [
        ("HS256 with the public PEM", public_pem.clone()),
        ("HS256 with the raw public key", raw_public.clone()),
        ("HS256 with the JWKS x", x.clone().into_bytes()),
    ] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some(kid.clone());
            let token = encode(&header, &fresh(&claims), &EncodingKey::from_secret(&secret))
                .expect("sign HS");
            forged.push((what, token));
        }
    }
    // A key of the attacker's, with a made-up kid and with the real kid.
    let attacker = attacker_key(&app);
    forged.push((
        "attacker key, unknown kid",
        sign_eddsa(&attacker, Some("attacker-key"), &fresh(&claims)),
    ));
    forged.push((
        "attacker key, real kid",
        sign_eddsa(&attacker, Some(&kid), &fresh(&claims)),
    ));
    // The real key, but a kid the service does not know, or none.
    forged.push((
        "real key, unknown kid",
        sign_eddsa(&real_key, Some("retired-long-ago"), &fresh(&claims)),
    ));
    forged.push((
        "real key, no kid",
        sign_eddsa(&real_key, None, &fresh(&claims)),
    ));
    // The real key, expired beyond the 5 s leeway.
    let mut expired = fresh(&claims);
    let now = chrono::Utc::now().timestamp();
    expired["iat"] = json!(now - 960);
    expired["exp"] = json!(now - 60);
    forged.push(("expired", sign_eddsa(&real_key, Some(&kid), &expired)));
    // The real key, the wrong audience or issuer, or no expiry.
    for (what, field, value) in [
        ("wrong aud", "aud", json!("some-other-api")),
        ("aud list without ours", "aud", json!(["some-other-api"])),
        ("wrong iss", "iss", json!("https://evil.example")),
        ("no exp", "exp", Value::Null),
        ("no aud", "aud", Value::Null),
        ("no iss", "iss", Value::Null),
    ] {
        let mut changed = fresh(&claims);
        match value {
            Value::Null => {
                changed.as_object_mut().unwrap().remove(field);
            }
            value => changed[field] = value,
        }
        forged.push((what, sign_eddsa(&real_key, Some(&kid), &changed)));
    }
    // A real token with its payload swapped (the signature no longer fits).
    let mut other_user = claims.clone();
    other_user["sub"] = json!(uuid::Uuid::new_v4());
    let parts: Vec<&str> = real.split('.').collect();
    forged.push((
        "payload swapped",
        format!("{}.{}.{}", parts[0], encode_json(&other_user), parts[2]),
    ));
    forged.push(("signature stripped", format!("{}.{}.", parts[0], parts[1])));

    for (what, token) in &forged {
        let response = app.get_as("/v1/users/me", token).await;
        assert_eq!(response.status(), 401, "{what} was not refused");
        assert_problem(response, 401, "unauthorized", None).await;
    }
    // The real token still works after all that.
    assert_eq!(app.get("/v1/users/me").await.status(), 200);
}

#[tokio::test]
async fn a_second_key_can_sign_while_the_retired_one_still_verifies() {
    let app = spawn_app().await;
    let old_token = app.admin_token.clone();
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();
    let retired_public = format!("{}.pub", key_file(&app.db));
    let new_key = std::path::Path::new(&key_file(&app.db)).with_file_name("jwt-next.pem");

    let mut settings = api_settings(&app.db, &app.topology, &["--relay-enabled=false"]);
    settings.auth.jwt_signing_key_file = new_key.clone();
    settings.auth.jwt_retired_key_files = vec![retired_public.into()];
    let next = api::startup::Application::build(settings)
        .await
        .expect("build the api with the new key");
    let next_address = format!("http://127.0.0.1:{}", next.port());
    tokio::spawn(next.run_until_stopped());
    assert!(new_key.exists(), "the new key was generated");

    // A token of the old key still works on the new process.
    let response = app
        .client
        .get(format!("{next_address}/v1/users/me"))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "old token refused after rotation");

    // The new process signs with the new key.
    let new_token = login(&app.client, &next_address, ADMIN_EMAIL, GOOD_PASSWORD).await
        ["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_kid = jsonwebtoken::decode_header(&new_token)
        .unwrap()
        .kid
        .unwrap();
    assert_ne!(new_kid, old_kid);
    let response = app
        .client
        .get(format!("{next_address}/v1/users/me"))
        .bearer_auth(&new_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Its JWKS lists both; the old process knows only the old key.
    let kids = |jwks: Value| -> BTreeSet<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        kids(jwks(&app.client, &next_address).await),
        BTreeSet::from([old_kid.clone(), new_kid.clone()])
    );
    assert_eq!(
        kids(jwks(&app.client, &app.address).await),
        BTreeSet::from([old_kid])
    );
    let response = app.get_as("/v1/users/me", &new_token).await;
    assert_problem(response, 401, "unauthorized", None).await;
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn login_and_refresh_are_rate_limited_per_client_but_health_is_not() {
    let app = spawn_app_with(&["--auth-rate-per-second=1", "--auth-rate-burst=2"]).await;

    let logins = (0..8).map(|n| {
        app.request(Method::POST, "/v1/auth/login", None)
            .json(&json!({"email": format!("nobody{n}@example.com"), "password": WRONG_PASSWORD}))
            .send()
    });
    let responses = futures_util::future::join_all(logins).await;
    let mut limited = 0;
    for response in responses {
        let response = response.expect("login");
        match response.status().as_u16() {
            401 => {}
            429 => {
                limited += 1;
                assert_rate_limited(response).await;
            }
            other => panic!("login answered {other}"),
        }
    }
    assert!(limited >= 3, "only {limited} of 8 logins were limited");

    let refreshes = (0..8).map(|_| {
        app.request(Method::POST, "/v1/auth/refresh", None)
            .json(&json!({"refresh_token": "garbage"}))
            .send()
    });
    let responses = futures_util::future::join_all(refreshes).await;
    let mut limited = 0;
    for response in responses {
        let response = response.expect("refresh");
        match response.status().as_u16() {
            401 => {}
            429 => {
                limited += 1;
                assert_rate_limited(response).await;
            }
            other => panic!("refresh answered {other}"),
        }
    }
    assert!(limited >= 3, "only {limited} of 8 refreshes were limited");

    let probes = (0..30).map(|_| app.request(Method::GET, "/health/live", None).send());
    for response in futures_util::future::join_all(probes).await {
        assert_eq!(response.expect("live").status(), 200);
    }
    // Other authenticated routes are not throttled either.
    for _ in 0..10 {
        assert_eq!(app.get("/v1/users/me").await.status(), 200);
    }
}

#[tokio::test]
async fn a_login_flood_beyond_the_hashing_queue_gets_503_and_never_starves_health() {
    // Failures are not to block the address here, and each login names its
    // own account: one account's share of the queue is bounded separately.
    let app = spawn_app_with(&["--password-hash-queue=0", "--lockout-ip-threshold=1000"]).await;
    app.register("ada@example.com", "Ada").await;

    let flood = {
        let client = app.client.clone();
        let url = app.url("/v1/auth/login");
        tokio::spawn(async move {
            let logins = (0..30).map(|n| {
                let (email, password) = if n == 1 {
                    ("ada@example.com".to_owned(), GOOD_PASSWORD)
                } else {
                    (format!("flood{n}@example.com"), WRONG_PASSWORD)
                };
                client
                    .post(&url)
                    .json(&json!({"email": email, "password": password}))
                    .send()
            });
            futures_util::future::join_all(logins).await
        })
    };
    let mut probes_during_flood = 0;
    let mut slowest = Duration::ZERO;
    while !flood.is_finished() {
        let started = Instant::now();
        let response = app
            .request(Method::GET, "/health/live", None)
            .send()
            .await
            .expect("live");
        let took = started.elapsed();
        assert_eq!(response.status(), 200);
        if !flood.is_finished() {
            probes_during_flood += 1;
            slowest = slowest.max(took);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let responses = flood.await.unwrap();
    assert!(probes_during_flood > 0, "the flood ended before any probe");
    assert!(
        slowest < Duration::from_millis(500),
        "/health/live took {slowest:?} during the flood"
    );

    let mut overloaded = 0;
    let mut answered = 0;
    for response in responses {
        let response = response.expect("login");
        match response.status().as_u16() {
            200 | 401 => answered += 1,
            503 => {
                overloaded += 1;
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry_after >= 1);
                assert_problem(response, 503, "overloaded", None).await;
            }
            other => panic!("a login answered {other}"),
        }
    }
    assert!(overloaded > 0, "no login was refused with 503");
    assert!(answered > 0, "every login was refused");
    // Once the flood is over, logins work again.
    login(&app.client, &app.address, "ada@example.com", GOOD_PASSWORD).await;
}

// ---------------------------------------------------------------- rehash

#[tokio::test]
async fn a_login_rehashes_a_hash_with_older_parameters_once() {
    let app = spawn_app().await;
    let email = domain::Email::parse("Old.Timer@Example.com").unwrap();
    let user_id = uuid::Uuid::now_v7();
    let old_hash = app::password::hash_with_cost(GOOD_PASSWORD, 8192, 1).unwrap();
    assert!(old_hash
        .as_str()
        .starts_with("$argon2id$v=19$m=8192,t=1,p=1$"));
    // As the API registers: claim the email, then append `user.registered`
    // (whose trigger confirms the claim).
    sqlx::query(&format!(
        "INSERT INTO unique_claims (scope, value, owner_id) VALUES ('{}', $1, $2)",
        domain::ClaimScope::USER_EMAIL.as_str()
    ))
    .bind(email.uniqueness_key())
    .bind(user_id.to_string())
    .execute(&app.db.pool)
    .await
    .unwrap();
    let users = infra::commands::CommandBus::<domain::User>::new(app.db.pool.clone());
    users
        .execute(
            &user_id.to_string(),
            domain::UserCommand::Register {
                user_id,
                email,
                display_name: domain::DisplayName::parse("Old Timer").unwrap(),
                password_hash: old_hash.clone(),
            },
            &bus::EventMetadata::default(),
        )
        .await
        .expect("register with the old hash");
    let confirmed: bool = sqlx::query_scalar(&format!(
        "SELECT confirmed FROM unique_claims WHERE scope = '{}' AND owner_id = $1",
        domain::ClaimScope::USER_EMAIL.as_str()
    ))
    .bind(user_id.to_string())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(confirmed);

    let rehashes = || async {
        sqlx::query_scalar::<_, i64>(&format!(
            "SELECT count(*) FROM events WHERE aggregate_type = 'user' AND aggregate_id = $1 \
             AND event_type = '{}'",
            domain::UserEvent::PASSWORD_REHASHED
        ))
        .bind(user_id.to_string())
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    // A wrong password does not rehash.
    let response = app
        .request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"email": "old.timer@example.com", "password": WRONG_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "invalid-credentials", None).await;
    assert_eq!(rehashes().await, 0);
    // The refusal's user.login_failed is appended after the answer; a
    // rehash racing it would lose the append (and wait for the next login).
    infra::testing::eventually(
        Duration::from_secs(10),
        "the failed login settled",
        || async {
            let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_login_failures")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
            (pending == 0).then_some(())
        },
    )
    .await;

    let tokens = login(
        &app.client,
        &app.address,
        "old.timer@example.com",
        GOOD_PASSWORD,
    )
    .await;
    assert_eq!(
        jwt_claims(tokens["access_token"].as_str().unwrap())["sub"],
        user_id.to_string()
    );
    assert_eq!(rehashes().await, 1);
    let user = users.load(&user_id.to_string()).await.unwrap();
    let current = user.password_hash().expect("hash").as_str().to_string();
    assert!(
        current.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "current hash parameters: {}",
        current.split('$').nth(3).unwrap_or_default()
    );
    assert_ne!(current, old_hash.as_str());

    // The new hash verifies the same password and is not rehashed again.
    login(
        &app.client,
        &app.address,
        "old.timer@example.com",
        GOOD_PASSWORD,
    )
    .await;
    assert_eq!(rehashes().await, 1);
    let again = users.load(&user_id.to_string()).await.unwrap();
    assert_eq!(again.password_hash().unwrap().as_str(), current);
}

// ---------------------------------------------------------------- sign-up

#[tokio::test]
async fn closed_sign_up_needs_users_write() {
    let app = spawn_app().await;
    let body =
        json!({"email": "eve@example.com", "password": GOOD_PASSWORD, "display_name": "Eve"});
    let response = app
        .request(Method::POST, "/v1/users", None)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, 401, "unauthorized", None).await;

    let (_, tokens) = app.user_with_session("ada@example.com").await;
    let response = app
        .request(
            Method::POST,
            "/v1/users",
            Some(tokens["access_token"].as_str().unwrap()),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 403, "forbidden", None).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("users:write"),
        "{problem}"
    );
    let claimed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM unique_claims WHERE value = 'eve@example.com'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(claimed, 0, "a refused sign-up claims nothing");

    // With users:write (the administrator) it works.
    let response = app.post_json("/v1/users", &body).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn open_sign_up_lets_anyone_register() {
    let app = spawn_app_with(&["--signup-mode=open"]).await;
    let response = app
        .request(Method::POST, "/v1/users", None)
        .json(
            &json!({"email": "eve@example.com", "password": GOOD_PASSWORD, "display_name": "Eve"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    login(&app.client, &app.address, "eve@example.com", GOOD_PASSWORD).await;
    // Open sign-up opens registration only.
    let response = app
        .request(Method::GET, "/v1/users", None)
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized", None).await;
}

// ---------------------------------------------------------------- 401s

#[tokio::test]
async fn every_protected_route_needs_a_valid_bearer_token() {
    let app = spawn_app().await;
    let user = app.admin_id.clone();
    let other = uuid::Uuid::new_v4();
    let body = json!({"email": "x@example.com", "password": GOOD_PASSWORD, "display_name": "X"});
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/users".into(), None),
        (Method::POST, "/v1/users".into(), Some(body)),
        (Method::GET, "/v1/users/me".into(), None),
        (Method::GET, format!("/v1/users/{user}"), None),
        (Method::GET, "/v1/users/not-a-uuid".into(), None),
        (
            Method::PATCH,
            format!("/v1/users/{user}"),
            Some(json!({"display_name": "Mallory"})),
        ),
        (Method::POST, format!("/v1/users/{user}/deactivate"), None),
        (Method::POST, format!("/v1/users/{user}/reactivate"), None),
        (Method::POST, format!("/v1/users/{user}/unlock"), None),
        (
            Method::POST,
            format!("/v1/users/{user}/password"),
            Some(
                json!({"current_password": GOOD_PASSWORD, "new_password": "another good passphrase"}),
            ),
        ),
        (
            Method::POST,
            format!("/v1/users/{user}/roles"),
            Some(json!({"role_id": other})),
        ),
        (
            Method::DELETE,
            format!("/v1/users/{user}/roles/{other}"),
            None,
        ),
        (
            Method::POST,
            "/v1/roles".into(),
            Some(json!({"name": "x", "description": "x", "permissions": []})),
        ),
        (Method::GET, "/v1/roles".into(), None),
        (Method::GET, format!("/v1/roles/{other}"), None),
        (Method::DELETE, format!("/v1/roles/{other}"), None),
        (
            Method::PUT,
            format!("/v1/roles/{other}/permissions"),
            Some(json!({"permissions": ["users:read"]})),
        ),
        (Method::GET, "/v1/sessions".into(), None),
        (Method::GET, format!("/v1/sessions?user_id={user}"), None),
        (Method::DELETE, format!("/v1/sessions/{other}"), None),
        (Method::POST, "/v1/auth/logout".into(), None),
    ];
    let expired = {
        let mut claims = jwt_claims(&app.admin_token);
        claims["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
        let key = EncodingKey::from_ed_pem(&std::fs::read(key_file(&app.db)).unwrap()).unwrap();
        let kid = jsonwebtoken::decode_header(&app.admin_token).unwrap().kid;
        sign_eddsa(&key, kid.as_deref(), &claims)
    };
    let bad_credentials: [(&str, Option<String>); 6] = [
        ("no token", None),
        ("garbage bearer", Some("Bearer garbage".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("refresh token as bearer", Some("Bearer x.y".into())),
        ("expired bearer", Some(format!("Bearer {expired}"))),
        ("basic auth", Some("Basic YWRtaW46cGFzc3dvcmQ=".into())),
    ];
    for (method, path, body) in &routes {
        for (what, authorization) in &bad_credentials {
            let mut request = app.client.request(method.clone(), app.url(path));
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.expect("request");
            assert_eq!(
                response.status(),
                401,
                "{method} {path} with {what} answered {}",
                response.status()
            );
            // RFC 6750: `error="invalid_token"` once a bearer token was sent.
            let challenge = match authorization {
                Some(sent) if sent.starts_with("Bearer") => r#"Bearer error="invalid_token""#,
                _ => "Bearer",
            };
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|value| value.to_str().unwrap()),
                Some(challenge),
                "{method} {path} with {what}: WWW-Authenticate"
            );
            assert_problem(response, 401, "unauthorized", None).await;
        }
    }
    // Nothing was written by any of them.
    assert_eq!(app.event_count().await, app.baseline_events);

    // The public routes answer without a token.
    for path in [
        "/health/live",
        "/health/ready",
        "/.well-known/jwks.json",
        "/openapi.json",
    ] {
        let response = app.request(Method::GET, path, None).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = app
        .request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"email": ADMIN_EMAIL, "password": GOOD_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "login needs no token");
    let tokens: Value = response.json().await.unwrap();
    let response = refresh(&app, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200, "refresh needs no access token");
}

// ---------------------------------------------------------------- helpers

/// The claims of a JWT, read without verifying it.
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("JSON claims")
}

fn encode_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// `claims` with a new `jti`, `iat` now and `exp` in 15 minutes.
fn fresh(claims: &Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = claims.clone();
    claims["jti"] = json!(uuid::Uuid::new_v4());
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 900);
    claims
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", encode_json(header), encode_json(claims))
}

fn sign_eddsa(key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("sign EdDSA")
}

/// A fresh Ed25519 key the service has never seen.
fn attacker_key(app: &TestApp) -> EncodingKey {
    let file = std::env::temp_dir()
        .join(format!("{}-attacker", app.db.name))
        .join("jwt.pem");
    app::keys::SigningKeys::load(&file, true, &[]).expect("generate a key");
    let key = EncodingKey::from_ed_pem(&std::fs::read(&file).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    key
}

async fn jwks(client: &reqwest::Client, address: &str) -> Value {
    let response = client
        .get(format!("{address}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(response.status(), 200);
    response.json().await.expect("jwks json")
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .expect("refresh")
}

/// `GET /v1/users/me` once the read model has the user; panics on a 401.
async fn me_when_projected(app: &TestApp, token: &str) -> Value {
    infra::testing::eventually(SHORT, "me", || async {
        let response = app.get_as("/v1/users/me", token).await;
        assert_ne!(response.status(), 401, "token refused");
        if response.status() == 200 {
            response.json::<Value>().await.ok()
        } else {
            None
        }
    })
    .await
}

async fn session_events(app: &TestApp, session_id: &str, event_type: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events \
         WHERE aggregate_type = 'session' AND aggregate_id = $1 AND event_type = $2",
    )
    .bind(session_id)
    .bind(event_type)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

/// `password_verifications_total` as the process's `/metrics` shows it.
async fn verifications(client: &reqwest::Client, address: &str) -> u64 {
    let text = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("password_verifications_total "))
        .map_or(0, |value| value.trim().parse().expect("a counter"))
}

async fn assert_rate_limited(response: reqwest::Response) {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
    assert_problem(response, 429, "too-many-requests", None).await;
}
