//! Second factors: enrolling an authenticator app, logging in with its code
//! or a recovery code, and what must not work (a replayed code, a code two
//! steps off, a challenge used twice or late, wrong codes past the lockout).

use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::second_factor::totp::{step_at, STEP_SECONDS};
use domain::TotpSecret;
use reqwest::Method;
use serde_json::{json, Value};

use infra::testing::eventually;

use crate::support::{
    self, assert_problem, login, spawn_app, spawn_app_with, spawn_app_with_worker, TestApp,
    GOOD_PASSWORD, SHORT,
};

/// A person with a session and an enabled authenticator app: its secret,
/// their tokens and the recovery codes the enrolment showed.
struct Enrolled {
    user_id: String,
    email: String,
    secret: TotpSecret,
    tokens: Value,
    recovery_codes: Vec<String>,
    /// The time step the enrolment's code was for (now used).
    used_step: u64,
}

fn code_at_step(secret: &TotpSecret, step: u64) -> String {
    secret.code_at_step(step).to_string()
}

fn now_step() -> u64 {
    step_at(chrono::Utc::now().timestamp())
}

/// Waits, if need be, until the current time step has at least 5 s left,
/// so that a code computed for an offset from it is still that offset when
/// the server checks it.
async fn away_from_a_step_edge() {
    let into_step = chrono::Utc::now().timestamp() % STEP_SECONDS;
    if into_step >= STEP_SECONDS - 5 {
        let wait = (STEP_SECONDS - into_step + 1) as u64;
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    }
}

/// Begins enrolling an authenticator app for `user_id`: its secret (the
/// URI checked to carry it) and the path that confirms it.
async fn begin(app: &TestApp, user_id: &str, access: &str) -> (TotpSecret, String) {
    let begun = app
        .send(
            Method::POST,
            &format!("/v1/users/{user_id}/second-factors/totp"),
            access,
            None,
        )
        .await;
    assert_eq!(begun.status(), 201);
    let begun: Value = begun.json().await.unwrap();
    let secret = TotpSecret::from_base32(begun["secret"].as_str().unwrap()).unwrap();
    let uri = begun["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/identity-service:"), "{uri}");
    assert!(uri.contains(&format!("secret={}", secret.base32())));
    let factor = begun["factor_id"].as_str().unwrap();
    let confirm = format!("/v1/users/{user_id}/second-factors/{factor}/confirm");
    (secret, confirm)
}

async fn enrolled(app: &TestApp, name: &str) -> Enrolled {
    let email = format!("{name}@example.com");
    let (user_id, tokens) = app.user_with_session(&email).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (secret, confirm) = begin(app, &user_id, access).await;

    // Until confirmed, logins ask for nothing more.
    let plain = login(&app.client, &app.address, &email, GOOD_PASSWORD).await;
    assert!(plain["access_token"].is_string());

    let wrong = app
        .send(
            Method::POST,
            &confirm,
            access,
            Some(json!({"code": "000000"})),
        )
        .await;
    assert_problem(wrong, 422, "validation-failed", Some("code")).await;
    // One step behind is still accepted (clock skew).
    away_from_a_step_edge().await;
    let used_step = now_step() - 1;
    let confirmed = app
        .send(
            Method::POST,
            &confirm,
            access,
            Some(json!({"code": code_at_step(&secret, used_step)})),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.unwrap();
    let recovery_codes: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery_codes.len(), 10);
    Enrolled {
        user_id,
        email,
        secret,
        tokens,
        recovery_codes,
        used_step,
    }
}

/// The first step: the password, answered with a challenge and no token.
async fn challenge(app: &TestApp, email: &str) -> String {
    let first = login(&app.client, &app.address, email, GOOD_PASSWORD).await;
    assert_eq!(first["second_factor_required"], true, "{first}");
    assert!(first.get("access_token").is_none());
    assert_eq!(first["methods"], json!(["totp", "recovery_code"]));
    first["challenge"].as_str().unwrap().to_owned()
}

async fn second_step(app: &TestApp, body: Value) -> reqwest::Response {
    app.request(Method::POST, "/v1/auth/login/second-factor", None)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_code_completes_the_login_once_and_never_again() {
    let app = spawn_app().await;
    let ada = enrolled(&app, "ada").await;

    // One step ahead is accepted too; the token says how the person proved it.
    let next = ada.used_step + 2;
    let issued = loop {
        // The step two ahead of the enrolment's is at most one ahead of now.
        if now_step() + 1 >= next {
            let challenge = challenge(&app, &ada.email).await;
            let body = json!({"challenge": challenge, "code": code_at_step(&ada.secret, next)});
            break (challenge, second_step(&app, body).await);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let (used_challenge, response) = issued;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims(access)["sub"], ada.user_id.as_str());

    // A refresh keeps how the session was proved.
    let refreshed = app
        .request(Method::POST, "/v1/auth/refresh", None)
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    assert_eq!(
        claims(refreshed["access_token"].as_str().unwrap())["amr"],
        json!(["pwd", "otp"])
    );

    // The same challenge again, even with another right proof: refused.
    let again = second_step(
        &app,
        json!({"challenge": used_challenge, "recovery_code": ada.recovery_codes[0]}),
    )
    .await;
    assert_problem(again, 401, "invalid-credentials", None).await;

    // The same code with a new challenge (a replay), and codes two steps
    // off: refused, one answer for all.
    let fresh = challenge(&app, &ada.email).await;
    away_from_a_step_edge().await;
    for step in [next, now_step() - 2, now_step() + 2] {
        let body = json!({"challenge": fresh, "code": code_at_step(&ada.secret, step)});
        let refused = second_step(&app, body).await;
        assert_problem(refused, 401, "invalid-credentials", None).await;
    }

    // A challenge used late: refused however right the code.
    sqlx::query("UPDATE login_challenges SET expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let late = second_step(
        &app,
        json!({"challenge": fresh, "recovery_code": ada.recovery_codes[0]}),
    )
    .await;
    assert_problem(late, 401, "invalid-credentials", None).await;

    // Malformed second steps name the field.
    let fresh = challenge(&app, &ada.email).await;
    for (body, field) in [
        (json!({"challenge": fresh}), "code"),
        (json!({"challenge": fresh, "code": "12345"}), "code"),
        (
            json!({"challenge": fresh, "recovery_code": "nope"}),
            "recovery_code",
        ),
        (
            json!({"challenge": fresh, "code": "123456", "recovery_code": ada.recovery_codes[1]}),
            "code",
        ),
    ] {
        let response = second_step(&app, body).await;
        assert_problem(response, 422, "validation-failed", Some(field)).await;
    }
    assert!(ada.tokens["access_token"].is_string());
}

#[tokio::test]
async fn a_recovery_code_works_once_and_the_set_can_be_replaced() {
    let app = spawn_app().await;
    let bob = enrolled(&app, "bob").await;
    let code = bob.recovery_codes[3].to_uppercase().replace('-', " ");
    let first = second_step(
        &app,
        json!({"challenge": challenge(&app, &bob.email).await, "recovery_code": code}),
    )
    .await;
    assert_eq!(first.status(), 200);
    let tokens: Value = first.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let again = second_step(
        &app,
        json!({"challenge": challenge(&app, &bob.email).await, "recovery_code": bob.recovery_codes[3]}),
    )
    .await;
    assert_problem(again, 401, "invalid-credentials", None).await;

    let listed: Value = app
        .get_as(
            &format!("/v1/users/{}/second-factors", bob.user_id),
            &access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["recovery_codes_left"], 9);
    assert_eq!(listed["items"][0]["enabled"], true);
    assert!(!listed.to_string().contains(&bob.secret.base32()));

    // A new set: every old code stops working.
    let replaced = app
        .send(
            Method::POST,
            &format!("/v1/users/{}/recovery-codes", bob.user_id),
            &access,
            None,
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["recovery_codes"].as_array().unwrap().len(), 10);
    let old = second_step(
        &app,
        json!({"challenge": challenge(&app, &bob.email).await, "recovery_code": bob.recovery_codes[4]}),
    )
    .await;
    assert_problem(old, 401, "invalid-credentials", None).await;

    // The log has the enrolment and the code's use, never a code or secret.
    let history: Value = app
        .get(&format!("/v1/audit/second_factor/{}/history", bob.user_id))
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
            domain::SecondFactorEvent::TOTP_ENABLED.name(),
            domain::SecondFactorEvent::RECOVERY_CODES_GENERATED.name(),
            // The enrolment's code proved the factor in that session.
            domain::SecondFactorEvent::VERIFIED.name(),
            domain::SecondFactorEvent::RECOVERY_CODE_USED.name(),
            // The login's second step.
            domain::SecondFactorEvent::VERIFIED.name(),
            domain::SecondFactorEvent::RECOVERY_CODES_GENERATED.name(),
        ]
    );
    assert!(!history.to_string().contains(&bob.recovery_codes[3]));
    assert_eq!(
        history["items"][1]["payload"]["RecoveryCodesGenerated"]["code_hashes"],
        domain::REDACTED
    );
}

#[tokio::test]
async fn wrong_codes_lock_the_account_like_wrong_passwords() {
    let app = spawn_app_with_worker(
        &[],
        &["--lockout-threshold=3", "--lockout-window-seconds=60"],
    )
    .await;
    let eve = enrolled(&app, "eve").await;
    let wrong = format!(
        "{:06}",
        (eve.secret
            .code_at_step(now_step())
            .to_string()
            .parse::<u32>()
            .unwrap()
            + 1)
            % 1_000_000
    );
    let challenge = challenge(&app, &eve.email).await;
    for _ in 0..3 {
        let refused = second_step(&app, json!({"challenge": challenge, "code": wrong})).await;
        assert_problem(refused, 401, "invalid-credentials", None).await;
    }
    eventually(SHORT, "the account locked", || async {
        let locked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = $2",
        )
        .bind(&eve.user_id)
        .bind(domain::UserEvent::LOCKED.name())
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        (locked > 0).then_some(())
    })
    .await;
    // Locked: even a right recovery code does not sign in.
    let right = second_step(
        &app,
        json!({"challenge": challenge, "recovery_code": eve.recovery_codes[0]}),
    )
    .await;
    assert_problem(right, 401, "invalid-credentials", None).await;
}

#[tokio::test]
async fn factors_are_removed_by_their_owner_or_an_administrator_holding_more_and_erased_with_the_person(
) {
    let app = spawn_app().await;
    let kim = enrolled(&app, "kim").await;
    let factors = format!("/v1/users/{}/second-factors", kim.user_id);
    let listed: Value = app.get(&factors).await.json().await.unwrap();
    let factor = listed["items"][0]["factor_id"].as_str().unwrap().to_owned();

    // Someone holding users:write but not what kim holds after a role: 403.
    let role = app.create_role("kim-power", &["audit:read"]).await;
    app.assign_role(&kim.user_id, &role).await;
    let (_, helper, _) = app
        .user_holding("helper", &["users:write", "users:read"])
        .await;
    let refused = app
        .send(
            Method::DELETE,
            &format!("{factors}/{factor}"),
            &helper,
            None,
        )
        .await;
    assert_problem(refused, 403, "forbidden", None).await;
    // Enrolling for someone else is nobody's business but theirs.
    let foreign = app
        .send(
            Method::POST,
            &format!("{factors}/totp"),
            &app.admin_token,
            None,
        )
        .await;
    assert_problem(foreign, 404, "not-found", None).await;

    // The administrator (holding everything) removes it: logins ask for
    // the password alone again.
    let removed = app
        .send(
            Method::DELETE,
            &format!("{factors}/{factor}"),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(removed.status(), 200);
    let plain = login(&app.client, &app.address, &kim.email, GOOD_PASSWORD).await;
    assert!(plain["access_token"].is_string());
    assert_eq!(
        support::count_events(&app.db, domain::SecondFactorEvent::TOTP_REMOVED.name()).await,
        1
    );

    // Erasure takes every secret and code.
    let lee = enrolled(&app, "lee").await;
    let erased = app
        .post_empty(&format!("/v1/users/{}/erase", lee.user_id))
        .await;
    assert_eq!(erased.status(), 200);
    for table in ["totp_factors", "recovery_codes", "login_challenges"] {
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE user_id = $1::uuid"
        ))
        .bind(&lee.user_id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "{table}");
    }
}

#[tokio::test]
async fn an_outside_authenticator_reads_the_uri_and_its_codes_sign_in() {
    let Some(python) = support::outside_python("pyotp") else {
        return;
    };
    let app = spawn_app().await;
    let (user_id, tokens) = app.user_with_session("otp@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let begun: Value = app
        .send(
            Method::POST,
            &format!("/v1/users/{user_id}/second-factors/totp"),
            access,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let uri = begun["otpauth_uri"].as_str().unwrap().to_owned();
    // pyotp parses the URI as an app scanning its QR code would, and gives
    // the code of a moment: now for the confirmation, the next step for the
    // login.
    let code_at = |at: i64| {
        let output = Command::new(&python)
            .args([
                "-c",
                "import pyotp, sys; print(pyotp.parse_uri(sys.argv[1]).at(int(sys.argv[2])))",
                &uri,
                &at.to_string(),
            ])
            .output()
            .expect("run pyotp");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let now = chrono::Utc::now().timestamp();
    let confirm = format!(
        "/v1/users/{user_id}/second-factors/{}/confirm",
        begun["factor_id"].as_str().unwrap()
    );
    let confirmed = app
        .send(
            Method::POST,
            &confirm,
            access,
            Some(json!({"code": code_at(now)})),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    let challenge = challenge(&app, "otp@example.com").await;
    let next = (step_at(now) as i64 + 1) * STEP_SECONDS;
    let signed_in = second_step(&app, json!({"challenge": challenge, "code": code_at(next)})).await;
    assert_eq!(signed_in.status(), 200);
}

#[tokio::test]
async fn a_browser_signs_in_with_both_steps_in_cookies() {
    let app = spawn_app().await;
    let sam = enrolled(&app, "sam").await;
    let first = app
        .request(Method::POST, "/v1/auth/login", None)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"email": sam.email, "password": GOOD_PASSWORD, "session": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert!(
        first.headers().get("set-cookie").is_none(),
        "no session yet"
    );
    let first: Value = first.json().await.unwrap();
    let challenge = first["challenge"].as_str().unwrap().to_owned();
    let body = json!({
        "challenge": challenge,
        "recovery_code": sam.recovery_codes[0],
        "session": "cookie",
    });
    // From another site: refused before the code is looked at.
    let forged = app
        .request(Method::POST, "/v1/auth/login/second-factor", None)
        .header("sec-fetch-site", "cross-site")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let second = app
        .request(Method::POST, "/v1/auth/login/second-factor", None)
        .header("sec-fetch-site", "same-origin")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let cookies: Vec<&str> = second
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-access_token=")),
        "{cookies:?}"
    );
    let session: Value = second.json().await.unwrap();
    assert!(session.get("access_token").is_none() && session["session_id"].is_string());
}

/// The same code, or the same recovery code, sent twice at once with two
/// challenges: exactly one signs in.
#[tokio::test]
async fn a_code_raced_against_itself_signs_in_once() {
    let app = spawn_app().await;
    let ray = enrolled(&app, "ray").await;
    away_from_a_step_edge().await;
    let code = code_at_step(&ray.secret, ray.used_step + 2);
    for proof in [
        json!({"code": code}),
        json!({"recovery_code": ray.recovery_codes[0]}),
    ] {
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let mut body = proof.clone();
            body["challenge"] = json!(challenge(&app, &ray.email).await);
            bodies.push(body);
        }
        let (a, b) = tokio::join!(
            second_step(&app, bodies[0].clone()),
            second_step(&app, bodies[1].clone())
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 401], "{proof}");
    }
}

/// Enrols an authenticator app for `user_id` from the session of `access`
/// (which the confirming code proves): its secret.
async fn enrol(app: &TestApp, user_id: &str, access: &str) -> TotpSecret {
    let (secret, confirm) = begin(app, user_id, access).await;
    away_from_a_step_edge().await;
    let confirmed = app
        .send(
            Method::POST,
            &confirm,
            access,
            Some(json!({"code": code_at_step(&secret, now_step())})),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    secret
}

async fn assert_step_up_required(response: reqwest::Response, max_age: i64) {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!(r#"Bearer error="insufficient_user_authentication", max_age={max_age}"#)
    );
    let problem = assert_problem(response, 401, "step-up-required", None).await;
    assert_eq!(problem["max_age"], max_age);
}

async fn step_up_required(app: &TestApp, access: &str) -> bool {
    let session: Value = app
        .get_as("/v1/auth/session", access)
        .await
        .json()
        .await
        .unwrap();
    session["step_up_required"].as_bool().unwrap()
}

#[tokio::test]
async fn sensitive_commands_need_a_second_factor_proved_in_the_session_recently() {
    let app = spawn_app_with(&[
        "--webhooks-allow-http=true",
        "--webhooks-allow-private-networks=true",
    ])
    .await;
    // The administrator's second session starts before their factor exists,
    // so nothing was proved in it; the first proves it by enrolling.
    let stale = login(
        &app.client,
        &app.address,
        support::ADMIN_EMAIL,
        GOOD_PASSWORD,
    )
    .await;
    let stale = stale["access_token"].as_str().unwrap().to_owned();
    assert!(!step_up_required(&app, &stale).await);
    let secret = enrol(&app, &app.admin_id, &app.admin_token).await;
    assert!(step_up_required(&app, &stale).await);
    assert!(!step_up_required(&app, &app.admin_token).await);

    let (someone, _) = app.register("someone@example.com", "Someone").await;
    let role = app.create_role("viewers", &["users:read"]).await;
    let account: Value = app
        .post_json(
            "/v1/service-accounts",
            &json!({"name": "crm", "description": "test"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let account = account["id"].as_str().unwrap().to_owned();
    let factors: Value = app
        .get(&format!("/v1/users/{}/second-factors", app.admin_id))
        .await
        .json()
        .await
        .unwrap();
    let factor = factors["items"][0]["factor_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sensitive = [
        (
            Method::POST,
            format!("/v1/users/{someone}/password"),
            Some(json!({"new_password": "a brand new passphrase 7"})),
        ),
        (
            Method::PATCH,
            format!("/v1/users/{someone}"),
            Some(json!({"email": "someone.else@example.com"})),
        ),
        (
            Method::POST,
            format!("/v1/users/{someone}/roles"),
            Some(json!({"role_id": role})),
        ),
        (
            Method::POST,
            "/v1/roles".to_owned(),
            Some(json!({"name": "auditors", "description": "", "permissions": ["audit:read"]})),
        ),
        (
            Method::PUT,
            format!("/v1/roles/{role}/permissions"),
            Some(json!({"permissions": ["users:read", "users:write"]})),
        ),
        (
            Method::POST,
            "/v1/webhooks".to_owned(),
            Some(
                json!({"url": "http://127.0.0.1:9/in", "event_types": ["user.*"], "description": "CRM"}),
            ),
        ),
        (
            Method::POST,
            format!("/v1/service-accounts/{account}/keys"),
            Some(json!({"description": "sync"})),
        ),
        (
            Method::POST,
            format!("/v1/users/{}/recovery-codes", app.admin_id),
            None,
        ),
        (
            Method::POST,
            format!("/v1/users/{}/second-factors/totp", app.admin_id),
            None,
        ),
        (Method::POST, format!("/v1/users/{someone}/erase"), None),
        (
            Method::DELETE,
            format!("/v1/users/{}/second-factors/{factor}", app.admin_id),
            None,
        ),
    ];
    let before = app.event_count().await;
    for (method, path, body) in &sensitive {
        let refused = app.send(method.clone(), path, &stale, body.clone()).await;
        assert_step_up_required(refused, 900).await;
    }
    assert_eq!(app.event_count().await, before, "a refused command wrote");
    // What is not sensitive runs as before.
    let renamed = app
        .send(
            Method::PATCH,
            &format!("/v1/users/{someone}"),
            &stale,
            Some(json!({"display_name": "Some One"})),
        )
        .await;
    assert_eq!(renamed.status(), 200);

    // A wrong code is named and proves nothing; the right one steps up.
    let step_up = |code: String| {
        app.request(Method::POST, "/v1/auth/step-up", Some(&stale))
            .json(&json!({"code": code}))
            .send()
    };
    away_from_a_step_edge().await;
    let wrong = step_up(code_at_step(&secret, now_step() + 2))
        .await
        .unwrap();
    assert_problem(wrong, 422, "validation-failed", Some("code")).await;
    let code = code_at_step(&secret, now_step() + 1);
    let stepped: Value = step_up(code.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(stepped["step_up_valid_for"], 900);
    let claims = claims(stepped["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert!((claims["auth_time"].as_i64().unwrap() - chrono::Utc::now().timestamp()).abs() < 30);
    // The same code again is a replay.
    let replayed = step_up(code).await.unwrap();
    assert_problem(replayed, 422, "validation-failed", Some("code")).await;
    assert_eq!(
        support::count_events(&app.db, domain::SecondFactorEvent::VERIFIED.name()).await,
        2,
        "the enrolment's proof and the step-up"
    );

    // The session, not the token, holds the proof: the old token now runs
    // every sensitive command.
    assert!(!step_up_required(&app, &stale).await);
    for (method, path, body) in sensitive {
        let done = app.send(method.clone(), &path, &stale, body).await;
        assert!(
            done.status().is_success(),
            "{method} {path}: {}",
            done.status()
        );
    }
}

#[tokio::test]
async fn holders_of_a_chosen_permission_must_enrol_before_anything_else() {
    let app = spawn_app_with(&[
        "--second-factor-required-for=roles:write,audit:read",
        "--step-up-max-age-seconds=2",
    ])
    .await;
    let admin = app.admin_token.clone();
    let own = format!("/v1/users/{}", app.admin_id);
    for path in ["/v1/users", "/v1/roles", own.as_str()] {
        let refused = app.get_as(path, &admin).await;
        let problem = assert_problem(refused, 403, "second-factor-enrolment-required", None).await;
        assert!(problem["detail"].as_str().unwrap().contains("roles:write"));
    }
    // Enrolling someone else is not enrolling.
    let other = app
        .send(
            Method::POST,
            &format!("/v1/users/{}/second-factors/totp", uuid::Uuid::new_v4()),
            &admin,
            None,
        )
        .await;
    assert_problem(other, 403, "second-factor-enrolment-required", None).await;
    // Their own session, account and enrolment are open.
    assert_eq!(app.get_as("/v1/auth/session", &admin).await.status(), 200);
    assert_eq!(app.get_as("/v1/users/me", &admin).await.status(), 200);
    enrol(&app, &app.admin_id, &admin).await;
    assert_eq!(app.get_as("/v1/users", &admin).await.status(), 200);

    // A person without those permissions is not asked to enrol.
    let (_, reader, _) = app.user_holding("reader", &["users:read"]).await;
    assert_eq!(app.get_as("/v1/users", &reader).await.status(), 200);

    // The enrolment's proof lasts STEP_UP_MAX_AGE_SECONDS.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let late = app
        .send(
            Method::POST,
            "/v1/roles",
            &admin,
            Some(json!({"name": "late", "description": "", "permissions": ["users:read"]})),
        )
        .await;
    assert_step_up_required(late, 2).await;
}

#[tokio::test]
async fn a_passkey_registration_refuses_a_bad_name_a_malformed_credential_and_a_used_ceremony() {
    let app = spawn_app().await;
    let (user_id, tokens) = app.user_with_session("pat@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let passkeys = format!("/v1/users/{user_id}/second-factors/passkeys");
    let begun = app.send(Method::POST, &passkeys, access, None).await;
    assert_eq!(begun.status(), 201);
    let begun: Value = begun.json().await.unwrap();
    let options = &begun["passkey"]["publicKey"];
    assert_eq!(options["rp"]["id"], "localhost", "{begun}");
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    let finish = format!("{passkeys}/{}", begun["ceremony"].as_str().unwrap());
    let before = app.event_count().await;

    let named = app
        .send(
            Method::POST,
            &finish,
            access,
            Some(json!({"credential": {}, "name": "bell\u{7}"})),
        )
        .await;
    assert_problem(named, 422, "validation-failed", Some("name")).await;
    let malformed = app
        .send(
            Method::POST,
            &finish,
            access,
            Some(json!({"credential": {"id": "x"}})),
        )
        .await;
    assert_problem(malformed, 422, "validation-failed", Some("credential")).await;
    // The ceremony was used up by the attempt: it cannot be tried again.
    let again = app
        .send(
            Method::POST,
            &finish,
            access,
            Some(json!({"credential": {"id": "x"}})),
        )
        .await;
    assert_problem(again, 404, "not-found", None).await;
    assert_eq!(app.event_count().await, before, "nothing was registered");
    let listed: Value = app
        .get(&format!("/v1/users/{user_id}/second-factors"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]));
}
