//! Users from the HTTP command through the event store, the relay, the
//! broker and the projector back to the query endpoints.

use crate::support;
use crate::support::{assert_problem, spawn_app, spawn_app_with};
use serde_json::{json, Value};

#[tokio::test]
async fn register_then_read_your_write() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": " Alice@Example.COM ", "password": support::GOOD_PASSWORD, "display_name": "Alice"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/users/{id}"));
    let position = body["position"].as_i64().unwrap();
    assert!(position > 0);

    let response = app
        .get(&format!("{location}?min_position={position}"))
        .await;
    assert_eq!(response.status(), 200);
    let applied: i64 = response.headers()["projection-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(applied >= position);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["id"], id);
    assert_eq!(user["email"], "Alice@example.com");
    assert_eq!(user["display_name"], "Alice");
    assert_eq!(user["status"], "active");
    assert_eq!(user["version"], 1);
    assert!(user.get("password_hash").is_none());
}

#[tokio::test]
async fn list_filters_and_paginates_with_a_cursor() {
    let app = spawn_app().await;
    // The bootstrapped administrator is the first user.
    let mut ids = vec![app.admin_id.clone()];
    let mut last = 0;
    for n in 0..5 {
        let (id, position) = app
            .register(&format!("user{n}@example.com"), &format!("User {n}"))
            .await;
        ids.push(id);
        last = position;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/users?limit=2&min_position={last}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("projection-position"));
        let page: Value = response.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every user once, in registration order");

    let page: Value = app
        .get("/v1/users?email=USER3@example.com")
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], ids[4].as_str());
}

#[tokio::test]
async fn patch_changes_profile_and_frees_the_old_email() {
    let app = spawn_app().await;
    let (id, _) = app.register("old@example.com", "Old").await;
    let response = app
        .patch_json(
            &format!("/v1/users/{id}"),
            &json!({"email": "new@example.com", "display_name": "New"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let user = app.user_at(&id, body["position"].as_i64().unwrap()).await;
    assert_eq!(user["email"], "new@example.com");
    assert_eq!(user["display_name"], "New");
    assert_eq!(user["version"], 3);

    // The old address is free again, the new one is taken.
    app.register("old@example.com", "Someone else").await;
    let taken = app
        .post_json(
            "/v1/users",
            &json!({"email": "NEW@example.com", "password": support::GOOD_PASSWORD, "display_name": "X"}),
        )
        .await;
    assert_problem(taken, 409, "conflict", None).await;
}

#[tokio::test]
async fn patch_to_a_taken_email_changes_nothing() {
    let app = spawn_app().await;
    let (id, _) = app.register("first@example.com", "First").await;
    app.register("second@example.com", "Second").await;
    let events = app.event_count().await;
    let response = app
        .patch_json(
            &format!("/v1/users/{id}"),
            &json!({"email": "second@example.com", "display_name": "Renamed"}),
        )
        .await;
    assert_problem(response, 409, "conflict", None).await;
    assert_eq!(
        app.event_count().await,
        events,
        "display name not half-written"
    );
    assert_eq!(app.claim_count().await, app.baseline_claims + 2);
}

#[tokio::test]
async fn deactivate_and_reactivate() {
    let app = spawn_app().await;
    let (id, _) = app.register("d@example.com", "D").await;
    let response = app.post_empty(&format!("/v1/users/{id}/deactivate")).await;
    assert_eq!(response.status(), 200);
    let position = response.json::<Value>().await.unwrap()["position"]
        .as_i64()
        .unwrap();
    assert_eq!(app.user_at(&id, position).await["status"], "deactivated");
    let page: Value = app
        .get(&format!(
            "/v1/users?status=deactivated&min_position={position}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    let again = app.post_empty(&format!("/v1/users/{id}/deactivate")).await;
    assert_problem(again, 409, "conflict", None).await;
    let patch = app
        .patch_json(&format!("/v1/users/{id}"), &json!({"display_name": "Z"}))
        .await;
    assert_problem(patch, 409, "conflict", None).await;

    let response = app.post_empty(&format!("/v1/users/{id}/reactivate")).await;
    assert_eq!(response.status(), 200);
    let position = response.json::<Value>().await.unwrap()["position"]
        .as_i64()
        .unwrap();
    assert_eq!(app.user_at(&id, position).await["status"], "active");
    let again = app.post_empty(&format!("/v1/users/{id}/reactivate")).await;
    assert_problem(again, 409, "conflict", None).await;
}

#[tokio::test]
async fn a_position_not_reached_in_time_is_a_504_problem() {
    let app = spawn_app_with(&["--read-your-writes-timeout-ms=300"]).await;
    // The projector cannot write users_view while this lock is held.
    let mut blocker = app.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE users_view IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (id, position) = app.register("slow@example.com", "Slow").await;
    let started = std::time::Instant::now();
    let response = app
        .get(&format!("/v1/users/{id}?min_position={position}"))
        .await;
    assert_problem(response, 504, "projection-timeout", None).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let response = app.get(&format!("/v1/users?min_position={position}")).await;
    assert_problem(response, 504, "projection-timeout", None).await;
    blocker.rollback().await.unwrap();
}

#[tokio::test]
async fn concurrent_changes_to_one_user_conflict_but_never_fail() {
    let app = spawn_app().await;
    let (id, _) = app.register("busy@example.com", "Busy").await;
    let path = format!("/v1/users/{id}");
    let requests = (0..20).map(|n| {
        let body = json!({"display_name": format!("Name {n}")});
        let path = path.clone();
        let app = &app;
        async move { app.patch_json(&path, &body).await }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let accepted = statuses.iter().filter(|s| **s == 200).count() as i64;
    assert!(accepted >= 1);
    assert_eq!(app.event_count().await, app.baseline_events + 1 + accepted);
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health/live").await.status(), 200);
    let body: Value = infra::testing::eventually(support::SHORT, "ready", || async {
        let ready = app.get("/health/ready").await;
        if ready.status() == 200 {
            ready.json().await.ok()
        } else {
            None
        }
    })
    .await;
    assert_eq!(body["checks"]["database"], true);
    assert_eq!(body["checks"]["broker"], true);
}

#[tokio::test]
async fn the_correlation_id_reaches_the_event_and_comes_back() {
    let app = spawn_app().await;
    let body =
        json!({"email": "c@example.com", "password": support::GOOD_PASSWORD, "display_name": "C"});
    let response = app
        .client
        .post(app.url("/v1/users"))
        .bearer_auth(&app.admin_token)
        .header("x-correlation-id", "trace-me-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-correlation-id"], "trace-me-123");

    let unnamed = app.get("/v1/users").await;
    let generated = unnamed.headers()["x-correlation-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok());

    let stored: String = sqlx::query_scalar(&format!(
        "SELECT metadata ->> 'correlation_id' FROM events WHERE event_type = '{}' \
         ORDER BY global_position DESC LIMIT 1",
        domain::UserEvent::REGISTERED.name()
    ))
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, "trace-me-123");
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format() {
    let app = spawn_app().await;
    let (id, position) = app.register("m@example.com", "M").await;
    app.user_at(&id, position).await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    for metric in [
        "http_request_duration_seconds_bucket",
        "relay_events_published_total",
        "projector_events_applied_total",
        "projection_lag_seconds_bucket",
    ] {
        assert!(body.contains(metric), "{metric} missing from /metrics");
    }
    assert!(body.contains(r#"route="/v1/users""#));
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = &document["paths"];
    for (path, method) in [
        ("/v1/users", "post"),
        ("/v1/users", "get"),
        ("/v1/users/{id}", "get"),
        ("/v1/users/{id}", "patch"),
        ("/v1/users/{id}/deactivate", "post"),
        ("/v1/users/{id}/reactivate", "post"),
        ("/v1/users/{id}/password", "post"),
        ("/v1/users/{id}/unlock", "post"),
        ("/v1/users/{id}/roles", "post"),
        ("/v1/users/{id}/roles/{role_id}", "delete"),
        ("/v1/users/me", "get"),
        ("/v1/auth/login", "post"),
        ("/v1/auth/refresh", "post"),
        ("/v1/auth/logout", "post"),
        ("/v1/roles", "post"),
        ("/v1/roles", "get"),
        ("/v1/roles/{id}", "get"),
        ("/v1/roles/{id}", "delete"),
        ("/v1/roles/{id}/permissions", "put"),
        ("/v1/sessions", "get"),
        ("/v1/sessions/{id}", "delete"),
        ("/v1/audit/{aggregate_type}/{id}/history", "get"),
        ("/v1/audit/{aggregate_type}/{id}/state", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    let register = &paths["/v1/users"]["post"]["responses"];
    assert!(register["422"]["content"]["application/problem+json"].is_object());
    assert!(document["components"]["schemas"]["Problem"].is_object());
}

// ---- Issue 14, medium 3: one mailbox, one account ----

const MAILBOX: &str = "sec-lk4@example.com";

/// `email` logs in to the account with this id (read once `position` is projected).
async fn login_reaches(app: &support::TestApp, email: &str, position: i64) -> String {
    let tokens = support::login(&app.client, &app.address, email, support::GOOD_PASSWORD).await;
    let token = tokens["access_token"].as_str().unwrap();
    let me: Value = app
        .get_as(&format!("/v1/users/me?min_position={position}"), token)
        .await
        .json()
        .await
        .unwrap();
    me["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_way_of_writing_a_registered_mailbox_is_taken_or_refused() {
    let app = spawn_app().await;
    app.register(MAILBOX, "First").await;
    for variant in [
        "SEC-LK4@Example.COM",
        "sec-lk4@ｅｘａｍｐｌｅ.com",
        "sec-lk4@ＥＸＡＭＰＬＥ.com",
    ] {
        let response = app
            .post_json(
                "/v1/users",
                &json!({"email": variant, "password": support::GOOD_PASSWORD, "display_name": "Second"}),
            )
            .await;
        assert_problem(response, 409, "conflict", None).await;
    }
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": "\"sec-lk4\"@example.com", "password": support::GOOD_PASSWORD, "display_name": "Second"}),
        )
        .await;
    assert_problem(response, 422, "validation-failed", Some("email")).await;
    // One domain, in Unicode and in ASCII.
    app.register("sec-lk4@exämple.com", "Umlaut").await;
    for variant in ["sec-lk4@xn--exmple-cua.com", "SEC-LK4@EXÄMPLE.com"] {
        let response = app
            .post_json(
                "/v1/users",
                &json!({"email": variant, "password": support::GOOD_PASSWORD, "display_name": "Punycode"}),
            )
            .await;
        assert_problem(response, 409, "conflict", None).await;
    }
    // Nor can an existing account change its email to another's mailbox.
    let (other, _) = app.register("other@example.com", "Other").await;
    let response = app
        .patch_json(
            &format!("/v1/users/{other}"),
            &json!({"email": "sec-lk4@ｅｘａｍｐｌｅ.com"}),
        )
        .await;
    assert_problem(response, 409, "conflict", None).await;
    assert_eq!(app.claim_count().await, app.baseline_claims + 3);
}

#[tokio::test]
async fn login_and_the_email_filter_reach_the_account_by_any_way_of_writing_it() {
    let app = spawn_app().await;
    let (id, position) = app.register("Sec-LK4@ｅｘａｍｐｌｅ.com", "Typed").await;
    assert_eq!(
        app.user_at(&id, position).await["email"],
        "Sec-LK4@ｅｘａｍｐｌｅ.com"
    );
    for variant in [
        MAILBOX,
        "SEC-LK4@EXAMPLE.COM",
        "sec-lk4@ｅｘａｍｐｌｅ.com",
        "\"sec-lk4\"@example.com",
    ] {
        assert_eq!(
            login_reaches(&app, variant, position).await,
            id,
            "{variant}"
        );
        let path = format!(
            "/v1/users?email={}&min_position={position}",
            urlencode(variant)
        );
        let page: Value = app.get(&path).await.json().await.unwrap();
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|user| user["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [id.as_str()], "{variant}");
    }
}

#[tokio::test]
async fn concurrent_email_changes_of_one_user_leave_one_claim() {
    let app = spawn_app().await;
    let (id, _) = app.register("mover@example.com", "Mover").await;
    let path = format!("/v1/users/{id}");
    let requests = (0..10).map(|n| {
        let body = json!({"email": format!("mover{n}@example.com")});
        let path = path.clone();
        let app = &app;
        async move { app.patch_json(&path, &body).await }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    let current: String = sqlx::query_scalar(&format!(
        "SELECT {} FROM events WHERE aggregate_id = $1 ORDER BY sequence DESC LIMIT 1",
        domain::UserEvent::EMAIL_CHANGED_EMAIL.json_text()
    ))
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let claims: Vec<(String, bool)> =
        sqlx::query_as("SELECT value, confirmed FROM unique_claims WHERE owner_id = $1")
            .bind(&id)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(claims, [(current, true)]);
}

/// A user written as the service did before the canonical form: the claim
/// holds the whole address lowercased.
async fn register_the_old_way(app: &support::TestApp, email: &str) -> (String, i64) {
    let email = domain::Email::parse_existing(email).unwrap();
    let user_id = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO unique_claims (scope, value, owner_id) VALUES ($1, $2, $3)")
        .bind(domain::ClaimScope::USER_EMAIL.as_str())
        .bind(email.as_str().to_lowercase())
        .bind(user_id.to_string())
        .execute(&app.db.pool)
        .await
        .unwrap();
    let outcome = infra::commands::CommandBus::<domain::User>::new(app.db.pool.clone())
        .execute(
            &user_id.to_string(),
            domain::UserCommand::Register {
                user_id,
                email,
                display_name: domain::DisplayName::parse("Old").unwrap(),
                password_hash: app::password::hash_with_cost(support::GOOD_PASSWORD, 8192, 1)
                    .unwrap(),
            },
            &bus::EventMetadata::default(),
        )
        .await
        .expect("register the old way");
    (user_id.to_string(), outcome.position)
}

#[tokio::test]
async fn accounts_that_collide_in_the_canonical_form_all_keep_working() {
    let app = spawn_app().await;
    let (first, _) = app.register(MAILBOX, "First").await;
    let (quoted, _) = register_the_old_way(&app, "\"sec-lk4\"@example.com").await;
    let (fullwidth, _) = register_the_old_way(&app, "sec-lk4@ｅｘａｍｐｌｅ.com").await;
    let (dana, position) = register_the_old_way(&app, "Dana@ＥＸＡＭＰＬＥ.com").await;
    app.user_at(&dana, position).await;
    sqlx::query("UPDATE users_view SET email_key = lower(email)")
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM data_migrations")
        .execute(&app.db.pool)
        .await
        .unwrap();

    infra::email_keys::migrate(&app.db.pool).await.unwrap();
    infra::email_keys::migrate(&app.db.pool).await.unwrap();

    for (email, id) in [
        (MAILBOX, &first),
        ("SEC-LK4@example.com", &first),
        ("\"sec-lk4\"@example.com", &quoted),
        ("sec-lk4@ｅｘａｍｐｌｅ.com", &fullwidth),
        ("SEC-LK4@ｅｘａｍｐｌｅ.com", &fullwidth),
        ("dana@example.com", &dana),
        ("Dana@ｅｘａｍｐｌｅ.com", &dana),
    ] {
        assert_eq!(&login_reaches(&app, email, position).await, id, "{email}");
    }
    let found = |email: &'static str| {
        let app = &app;
        async move {
            let page: Value = app
                .get(&format!("/v1/users?email={}", urlencode(email)))
                .await
                .json()
                .await
                .unwrap();
            page["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(found(MAILBOX).await, 3);
    assert_eq!(found("dana@example.com").await, 1);

    // The mailbox stays taken while an account keeps its old form, even
    // once the account holding the canonical form moved away.
    let response = app
        .patch_json(
            &format!("/v1/users/{first}"),
            &json!({"email": "moved@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .post_json(
            "/v1/users",
            &json!({"email": MAILBOX, "password": support::GOOD_PASSWORD, "display_name": "Late"}),
        )
        .await;
    assert_problem(response, 409, "conflict", None).await;
}

fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
