//! Nobody grants what they do not hold, nobody takes over an account more
//! powerful than their own, and at least one active user always holds every
//! permission: each rule from the side of a caller holding slightly less
//! than needed, and the race of two administrators removing each other.

use domain::Permission;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{self, assert_problem, spawn_app, TestApp, GOOD_PASSWORD};

/// The `admin` role the bootstrap created.
async fn admin_role(app: &TestApp) -> String {
    sqlx::query_scalar(
        "SELECT owner_id FROM unique_claims WHERE scope = $1 AND value = 'admin' AND confirmed",
    )
    .bind(domain::ClaimScope::ROLE_NAME.as_str())
    .fetch_one(&app.db.pool)
    .await
    .expect("the admin role")
}

/// Asserts a 403 problem naming `permission` as the one missing.
async fn assert_needs(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    permission: &str,
) {
    let response = app.send(method.clone(), path, token, body).await;
    let problem = assert_problem(response, 403, "forbidden", None).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.ends_with(permission),
        "{method} {path}: {detail} should name {permission}"
    );
}

async fn assert_last_administrator(app: &TestApp, method: Method, path: &str, body: Option<Value>) {
    let response = app.send(method.clone(), path, &app.admin_token, body).await;
    assert_problem(response, 409, "last-administrator", None).await;
}

/// Every permission but `missing`, as names.
fn all_but(missing: Permission) -> Vec<&'static str> {
    Permission::ALL
        .iter()
        .filter(|permission| **permission != missing)
        .map(|permission| permission.as_str())
        .collect()
}

#[tokio::test]
async fn a_holder_of_roles_write_cannot_grant_itself_or_others_more() {
    let app = spawn_app().await;
    let admin_role = admin_role(&app).await;
    let (mallory, token, own_role) = app.user_holding("mallory", &["roles:write"]).await;
    let before = app.event_count().await;

    let assign_admin = Some(json!({"role_id": admin_role}));
    let path = format!("/v1/users/{mallory}/roles");
    assert_needs(
        &app,
        Method::POST,
        &path,
        &token,
        assign_admin,
        "users:read",
    )
    .await;
    let widen = Some(json!({"permissions": ["roles:write", "users:write"]}));
    let path = format!("/v1/roles/{own_role}/permissions");
    assert_needs(&app, Method::PUT, &path, &token, widen, "users:write").await;
    let create = Some(json!({"name": "backdoor", "permissions": ["roles:write", "users:write"]}));
    assert_needs(
        &app,
        Method::POST,
        "/v1/roles",
        &token,
        create,
        "users:write",
    )
    .await;
    let shrink_admin = Some(json!({"permissions": ["roles:write"]}));
    let path = format!("/v1/roles/{admin_role}/permissions");
    assert_needs(&app, Method::PUT, &path, &token, shrink_admin, "users:read").await;
    let path = format!("/v1/roles/{admin_role}");
    assert_needs(&app, Method::DELETE, &path, &token, None, "users:read").await;
    let path = format!("/v1/users/{}/roles/{admin_role}", app.admin_id);
    assert_needs(&app, Method::DELETE, &path, &token, None, "users:read").await;
    assert_eq!(app.event_count().await, before, "a refused request wrote");

    // What it holds, it may grant.
    let own = Some(json!({"name": "writers", "permissions": ["roles:write"]}));
    let response = app.send(Method::POST, "/v1/roles", &token, own).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_caller_holding_all_but_one_permission_cannot_assign_the_admin_role() {
    let app = spawn_app().await;
    let admin_role = admin_role(&app).await;
    let (carol, token, _) = app
        .user_holding("carol", &all_but(Permission::AuditRead))
        .await;
    let path = format!("/v1/users/{carol}/roles");
    let body = Some(json!({"role_id": admin_role}));
    assert_needs(&app, Method::POST, &path, &token, body, "audit:read").await;
}

#[tokio::test]
async fn a_holder_of_users_write_cannot_take_over_a_more_powerful_account() {
    let app = spawn_app().await;
    let (_, token, _) = app.user_holding("bob", &["users:write"]).await;
    let admin = app.admin_id.clone();
    let before = app.event_count().await;

    let reset = Some(json!({"new_password": "a brand new password for me"}));
    let takeovers = [
        (Method::POST, format!("/v1/users/{admin}/password"), reset),
        (Method::POST, format!("/v1/users/{admin}/deactivate"), None),
        (Method::POST, format!("/v1/users/{admin}/reactivate"), None),
        (Method::POST, format!("/v1/users/{admin}/unlock"), None),
        (
            Method::PATCH,
            format!("/v1/users/{admin}"),
            Some(json!({"email": "bob-owns-this@example.com"})),
        ),
    ];
    for (method, path, body) in takeovers {
        assert_needs(&app, method, &path, &token, body, "users:read").await;
    }
    assert_eq!(app.event_count().await, before, "a refused request wrote");
    support::login(
        &app.client,
        &app.address,
        support::ADMIN_EMAIL,
        GOOD_PASSWORD,
    )
    .await;

    // A user holding nothing bob lacks is bob's to manage.
    let (plain, _) = app.register("plain@example.com", "Plain").await;
    let reset = Some(json!({"new_password": "a brand new password for you"}));
    let path = format!("/v1/users/{plain}/password");
    let response = app.send(Method::POST, &path, &token, reset).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_last_administrator_cannot_be_removed() {
    let app = spawn_app().await;
    let admin_role = admin_role(&app).await;
    let admin = app.admin_id.clone();
    let before = app.event_count().await;

    let path = format!("/v1/users/{admin}/deactivate");
    assert_last_administrator(&app, Method::POST, &path, None).await;
    let path = format!("/v1/users/{admin}/roles/{admin_role}");
    assert_last_administrator(&app, Method::DELETE, &path, None).await;
    let path = format!("/v1/roles/{admin_role}");
    assert_last_administrator(&app, Method::DELETE, &path, None).await;
    let path = format!("/v1/roles/{admin_role}/permissions");
    let shrink = Some(json!({"permissions": all_but(Permission::AuditRead)}));
    assert_last_administrator(&app, Method::PUT, &path, shrink).await;
    assert_eq!(app.event_count().await, before, "a refused request wrote");

    // With a second administrator, either may go.
    let (dave, _) = app.register("dave@example.com", "Dave").await;
    app.assign_role(&dave, &admin_role).await;
    let response = app
        .post_empty(&format!("/v1/users/{dave}/deactivate"))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn administrators_giving_up_their_role_all_at_once_leave_one() {
    let app = spawn_app().await;
    let admin_role = admin_role(&app).await;
    let mut admins = vec![(app.admin_id.clone(), app.admin_token.clone())];
    for n in 0..5 {
        let email = format!("admin{n}@example.com");
        let (id, _) = app.register(&email, "Admin").await;
        app.assign_role(&id, &admin_role).await;
        let token =
            support::login_with_permissions(&app.client, &app.address, &email, GOOD_PASSWORD).await;
        admins.push((id, token));
    }

    // Each gives up the role while the others still seem to hold it, half
    // of them through a second api process: the rule holds across processes.
    let other = support::start_api(&app.db, &app.topology).await;
    let requests = admins.iter().enumerate().map(|(n, (id, token))| {
        let address = if n % 2 == 0 {
            &app.address
        } else {
            &other.address
        };
        app.client
            .delete(format!("{address}/v1/users/{id}/roles/{admin_role}"))
            .bearer_auth(token)
            .send()
    });
    let mut statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|response| response.expect("request").status().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 409],
        "exactly one must stay"
    );

    let unassigned = domain::UserEvent::ROLE_UNASSIGNED;
    let taken: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM events WHERE event_type = $1 AND {} = $2",
        unassigned.field("role_id").json_text()
    ))
    .bind(unassigned.name())
    .bind(&admin_role)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(taken, 5, "one administrator keeps the role");
}
