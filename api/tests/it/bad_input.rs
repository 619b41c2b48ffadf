//! Every input rule answers with an RFC 7807 problem naming the field, and a
//! rejected command leaves no event and no email claim behind.

use crate::support::{assert_problem, spawn_app, TestApp, GOOD_PASSWORD};
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
