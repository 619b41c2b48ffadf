//! Every input rule answers with an RFC 7807 problem naming the field, and a
//! rejected command leaves no event and no email claim behind.

use crate::support::{assert_problem, spawn_app, spawn_app_with, TestApp, GOOD_PASSWORD};
use serde_json::json;

async fn register_raw(app: &TestApp, body: &str, content_type: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/users"))
        .bearer_auth(&app.admin_token)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn assert_nothing_written(app: &TestApp) {
    assert_eq!(app.event_count().await, app.baseline_events, "no event");
    assert_eq!(app.claim_count().await, app.baseline_claims, "no claim");
}

fn registration(email: &str, password: &str, display_name: &str) -> serde_json::Value {
    json!({"email": email, "password": password, "display_name": display_name})
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = register_raw(&app, r#"{"email": "a@example.com","#, "application/json").await;
    assert_problem(response, 400, "malformed-json", None).await;
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn unknown_field_is_400_naming_it() {
    let app = spawn_app().await;
    let mut body = registration("a@example.com", GOOD_PASSWORD, "A");
    body["nickname"] = json!("x");
    let response = app.post_json("/v1/users", &body).await;
    assert_problem(response, 400, "bad-request", Some("nickname")).await;
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn missing_or_mistyped_field_is_400_naming_it() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": "a@example.com", "password": GOOD_PASSWORD}),
        )
        .await;
    assert_problem(response, 400, "bad-request", Some("display_name")).await;
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": 42, "password": GOOD_PASSWORD, "display_name": "A"}),
        )
        .await;
    assert_problem(response, 400, "bad-request", Some("email")).await;
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn invalid_emails_are_422_naming_email() {
    let app = spawn_app().await;
    let too_long = format!("{}@example.com", "a".repeat(250));
    for email in [
        "not-an-email",
        "a@",
        "@example.com",
        "a b@example.com",
        "",
        &too_long,
    ] {
        let response = app
            .post_json("/v1/users", &registration(email, GOOD_PASSWORD, "A"))
            .await;
        assert_problem(response, 422, "validation-failed", Some("email")).await;
    }
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn weak_or_over_long_passwords_are_422_naming_password() {
    let app = spawn_app().await;
    let too_long = "Xy7!".repeat(33);
    for password in [
        "short1!",
        "password1234",
        "aaaaaaaaaaaaaaaa",
        "abcabcabcabcabc",
        "123456789012",
        too_long.as_str(),
    ] {
        let response = app
            .post_json("/v1/users", &registration("a@example.com", password, "A"))
            .await;
        assert_problem(response, 422, "validation-failed", Some("password")).await;
    }
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn bad_display_names_are_422_naming_display_name() {
    let app = spawn_app().await;
    let too_long = "n".repeat(101);
    for name in [too_long.as_str(), "", "   ", "bell\u{7}"] {
        let response = app
            .post_json(
                "/v1/users",
                &registration("a@example.com", GOOD_PASSWORD, name),
            )
            .await;
        assert_problem(response, 422, "validation-failed", Some("display_name")).await;
    }
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn every_invalid_field_is_named_at_once() {
    let app = spawn_app().await;
    let response = app
        .post_json("/v1/users", &registration("nope", "short", ""))
        .await;
    let body = assert_problem(response, 422, "validation-failed", Some("email")).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "display_name"]);
}

#[tokio::test]
async fn body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let padding = "x".repeat(70 * 1024);
    let body = format!(
        r#"{{"email":"a@example.com","password":"{GOOD_PASSWORD}","display_name":"{padding}"}}"#
    );
    let response = register_raw(&app, &body, "application/json").await;
    assert_problem(response, 413, "payload-too-large", None).await;
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    let body = registration("a@example.com", GOOD_PASSWORD, "A").to_string();
    let response = register_raw(&app, &body, "text/plain").await;
    assert_problem(response, 415, "unsupported-media-type", None).await;
    let response = app
        .client
        .post(app.url("/v1/users"))
        .bearer_auth(&app.admin_token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported-media-type", None).await;
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn duplicate_email_is_409_in_any_case() {
    let app = spawn_app().await;
    app.register("dup@example.com", "First").await;
    let response = app
        .post_json(
            "/v1/users",
            &registration("DUP@Example.com", GOOD_PASSWORD, "Second"),
        )
        .await;
    assert_problem(response, 409, "conflict", None).await;
    assert_eq!(app.event_count().await, app.baseline_events + 1);
    assert_eq!(app.claim_count().await, app.baseline_claims + 1);
}

#[tokio::test]
async fn unknown_user_is_404() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::now_v7();
    for response in [
        app.get(&format!("/v1/users/{unknown}")).await,
        app.get("/v1/users/not-a-uuid").await,
        app.post_empty(&format!("/v1/users/{unknown}/deactivate"))
            .await,
        app.post_empty(&format!("/v1/users/{unknown}/reactivate"))
            .await,
        app.patch_json(
            &format!("/v1/users/{unknown}"),
            &json!({"display_name": "X"}),
        )
        .await,
        app.get("/v1/nothing-here").await,
    ] {
        assert_problem(response, 404, "not-found", None).await;
    }
    let response = app
        .patch_json(
            &format!("/v1/users/{unknown}"),
            &json!({"email": "ghost@example.com"}),
        )
        .await;
    assert_problem(response, 404, "not-found", None).await;
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn patch_rules() {
    let app = spawn_app().await;
    let (id, _) = app.register("p@example.com", "P").await;
    let path = format!("/v1/users/{id}");
    let response = app.patch_json(&path, &json!({})).await;
    assert_problem(response, 422, "validation-failed", Some("display_name")).await;
    let response = app.patch_json(&path, &json!({"email": "bad"})).await;
    assert_problem(response, 422, "validation-failed", Some("email")).await;
    let response = app.patch_json(&path, &json!({"password": "x"})).await;
    assert_problem(response, 400, "bad-request", Some("password")).await;
    assert_eq!(app.event_count().await, app.baseline_events + 1);
    assert_eq!(app.claim_count().await, app.baseline_claims + 1);
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_them() {
    let app = spawn_app().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("status=asleep", "status"),
        ("cursor=%27;drop", "cursor"),
        ("min_position=-1", "min_position"),
        ("min_position=x", "min_position"),
        ("colour=blue", "colour"),
    ] {
        let response = app.get(&format!("/v1/users?{query}")).await;
        assert_problem(response, 400, "bad-request", Some(field)).await;
    }
}

#[tokio::test]
async fn an_unserved_method_is_405() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/v1/users"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405, "method-not-allowed", None).await;
    let id = uuid::Uuid::now_v7();
    let response = app
        .client
        .put(app.url(&format!("/v1/users/{id}")))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405, "method-not-allowed", None).await;
}

/// A process that crashed between claiming an email and running the command
/// leaves a pending claim; it blocks the address only for a while.
#[tokio::test]
async fn a_pending_claim_blocks_until_it_is_stale_then_is_taken_over() {
    let app = spawn_app().await;
    let claim = &format!(
        "INSERT INTO unique_claims (scope, value, owner_id, claimed_at) \
                 VALUES ('{}', $1, 'crashed-process', now() - make_interval(secs => $2))",
        domain::ClaimScope::USER_EMAIL.as_str()
    );
    for (email, age_seconds) in [("fresh@example.com", 1.0), ("stale@example.com", 120.0)] {
        sqlx::query(claim)
            .bind(email)
            .bind(age_seconds)
            .execute(&app.db.pool)
            .await
            .unwrap();
    }
    let fresh = app
        .post_json(
            "/v1/users",
            &registration("fresh@example.com", GOOD_PASSWORD, "F"),
        )
        .await;
    assert_problem(fresh, 409, "conflict", None).await;
    let (id, _) = app.register("stale@example.com", "S").await;
    let owner: String = sqlx::query_scalar(
        "SELECT owner_id FROM unique_claims WHERE value = 'stale@example.com' AND confirmed",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(owner, id);
}

// ---- Issue 14, low: hostile input ----

#[tokio::test]
async fn control_characters_in_query_or_path_parameters_are_400_naming_them() {
    let app = spawn_app().await;
    for (path, field) in [
        ("/v1/users?email=%00", "email"),
        ("/v1/users?status=active%0A", "status"),
        ("/v1/users?cursor=%1B%5B2J", "cursor"),
        ("/v1/users/%00", "id"),
        ("/v1/users/ab%07cd/roles", "id"),
        ("/v1/roles/%7F", "id"),
        ("/v1/sessions?user_id=%00", "user_id"),
    ] {
        let response = app.get(path).await;
        assert_problem(response, 400, "bad-request", Some(field)).await;
    }
}

#[tokio::test]
async fn json_followed_by_anything_but_whitespace_is_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .patch(app.url(&format!("/v1/users/{}", app.admin_id)))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(r#"{"display_name":"x"} }}garbage[["#)
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "malformed-json", None).await;
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn long_arrays_are_refused_and_reported_errors_are_capped() {
    let app = spawn_app().await;
    // 48 KB: under the body limit.
    let unknown = vec!["x"; 12_000];
    let response = app
        .post_json("/v1/roles", &json!({"name": "big", "permissions": unknown}))
        .await;
    let body = assert_problem(response, 400, "bad-request", Some("permissions")).await;
    assert!(
        body.to_string().len() < 2_000,
        "problem of {} bytes",
        body.to_string().len()
    );

    let unknown: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    let response = app
        .post_json(
            "/v1/roles",
            &json!({"name": "many", "permissions": unknown}),
        )
        .await;
    let body = assert_problem(response, 422, "validation-failed", Some("permissions[0]")).await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 20, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("10 more"), "{detail}");
    assert!(!detail.contains("permissions[25]"), "{detail}");
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(&["--request-body-timeout-ms=1000"]).await;
    let address = app.address.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nhost: {address}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        for byte in br#"{"email": "a@example.com""# {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), trickle).await;
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("no answer to a slow body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("/request-timeout"), "{answer}");
}

#[tokio::test]
async fn secret_values_are_neither_echoed_nor_logged() {
    use infra::testing::{TestDatabase, TestTopology};
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![crate::support::projector_group()]);
    let common = crate::support::api_settings(&db, &topology, &[]).common;
    crate::support::spawn_projector(&common).await;
    let log = std::env::temp_dir().join(format!("{}-api.log", db.name));
    let mut api =
        crate::support::start_api_with(&db, &topology, &[("RUST_LOG", "debug")], Some(&log)).await;
    let client = reqwest::Client::new();
    let token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzZWNyZXQifQ.c2VjcmV0LXNpZ25hdHVyZQ";
    for query in [
        format!("access_token={token}"),
        format!("limit=5&refresh_token={token}-r"),
        format!("token={token}-t&password=hunter2-in-the-query"),
        // `;` separates parameters to some servers and proxies as `&` does.
        format!("limit=5;access_token={token}"),
        "email=a;password=semicolon-hunter2".to_owned(),
    ] {
        let response = client
            .get(format!("{}/v1/users?{query}", api.address))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error());
    }
    for body in [
        json!({"email": "n@example.com", "password": 271828182845904_u64}),
        json!({"email": "n@example.com", "password": ["31415926535897"]}),
    ] {
        let response = client
            .post(format!("{}/v1/auth/login", api.address))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400, "bad-request", Some("password")).await;
        let shown = problem.to_string();
        assert!(!shown.contains("271828182845904"), "{shown}");
        assert!(!shown.contains("31415926535897"), "{shown}");
    }
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &api.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = std::time::Instant::now() + crate::support::SHORT;
    while api.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "api still running");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        logs.contains("/v1/users"),
        "the requests are not in the log"
    );
    for secret in [
        "eyJhbGciOiJFZERTQSJ9",
        "c2VjcmV0LXNpZ25hdHVyZQ",
        "hunter2",
        "semicolon-hunter2",
        "271828182845904",
        "31415926535897",
    ] {
        assert!(!logs.contains(secret), "{secret:?} is in the log");
    }
}

/// The roles and the permissions in `/v1/users/me?min_position` are read
/// after the wait, together: never new roles with old permissions.
#[tokio::test]
async fn me_after_a_wait_shows_roles_and_permissions_of_the_same_moment() {
    let app = spawn_app().await;
    let (id, _) = app.register("waiting@example.com", "Waiting").await;
    let tokens = crate::support::login(
        &app.client,
        &app.address,
        "waiting@example.com",
        GOOD_PASSWORD,
    )
    .await;
    let token = tokens["access_token"].as_str().unwrap().to_string();
    // The projector cannot move its checkpoint while this row lock is held,
    // so the waiting request sees only what `projected` commits below.
    let mut held = app.db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM projection_checkpoints FOR UPDATE")
        .execute(&mut *held)
        .await
        .unwrap();
    // A position that was issued (one never issued is refused at once).
    let (_, target) = app.register("later@example.com", "Later").await;
    let path = format!("/v1/users/me?min_position={target}");
    let request = app.get_as(&path, &token);
    let projected = async {
        // The request has authenticated (no permissions yet) and is waiting.
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let role_id = uuid::Uuid::now_v7();
        let user_id = uuid::Uuid::parse_str(&id).unwrap();
        // What the triggers write when a role is created and assigned.
        sqlx::query(
            "INSERT INTO role_grants (role_id, name, permissions) \
             VALUES ($1, 'late', ARRAY['users:read'])",
        )
        .bind(role_id)
        .execute(&mut *held)
        .await
        .unwrap();
        sqlx::query("INSERT INTO user_role_grants (user_id, role_id) VALUES ($1, $2)")
            .bind(user_id)
            .bind(role_id)
            .execute(&mut *held)
            .await
            .unwrap();
        sqlx::query("UPDATE projection_checkpoints SET global_position = $1")
            .bind(target)
            .execute(&mut *held)
            .await
            .unwrap();
        held.commit().await.unwrap();
    };
    let (response, ()) = tokio::join!(request, projected);
    assert_eq!(response.status(), 200);
    let me: serde_json::Value = response.json().await.unwrap();
    assert_eq!(me["roles"], json!(["late"]), "{me}");
    assert_eq!(me["permissions"], json!(["users:read"]), "{me}");
}
