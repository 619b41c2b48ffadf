//! Permissions and roles: every rule that needs a permission answers a
//! plain user (no roles) with a `403 forbidden` problem and lets them
//! through once a role granting it is assigned; the role endpoints.

use crate::support;
use crate::support::{assert_problem, spawn_app, TestApp, SHORT};
use infra::testing::eventually;
use reqwest::Method;
use serde_json::{json, Value};

/// A plain user with a session: `(id, access token, session id)`.
async fn plain_user(app: &TestApp, email: &str) -> (String, String, String) {
    let (id, tokens) = app.user_with_session(email).await;
    (
        id,
        tokens["access_token"].as_str().unwrap().to_string(),
        tokens["session_id"].as_str().unwrap().to_string(),
    )
}

/// The permissions the caller's `/v1/users/me` lists.
async fn permissions_of(app: &TestApp, token: &str) -> Vec<String> {
    let response = app.get_as("/v1/users/me", token).await;
    if response.status() != 200 {
        return Vec::new();
    }
    let me: Value = response.json().await.unwrap();
    me["permissions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Gives the user a new role granting `permission` and waits until their
/// `/v1/users/me` lists it (permissions come from the read models).
async fn grant(app: &TestApp, user_id: &str, token: &str, permission: &str) -> String {
    let role_id = app
        .create_role(
            &format!("grants-{}", permission.replace(':', "-")),
            &[permission],
        )
        .await;
    let response = app
        .post_json(
            &format!("/v1/users/{user_id}/roles"),
            &json!({"role_id": role_id}),
        )
        .await;
    assert_eq!(response.status(), 200, "assign role");
    eventually(SHORT, "permission projected", || async {
        permissions_of(app, token)
            .await
            .iter()
            .any(|p| p == permission)
            .then_some(())
    })
    .await;
    role_id
}

async fn assert_forbidden(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) {
    let response = app.send(method.clone(), path, token, body).await;
    assert_eq!(response.status(), 403, "{method} {path}");
    assert_problem(response, 403, "forbidden", None).await;
}

async fn assert_status(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let response = app.send(method.clone(), path, token, body).await;
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Waits until the read model shows the user (a GET by the admin).
async fn projected(app: &TestApp, id: &str) {
    eventually(SHORT, "user projected", || async {
        (app.get(&format!("/v1/users/{id}")).await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn users_read_is_needed_to_list_users_and_read_others() {
    let app = spawn_app().await;
    let (alice, token, _) = plain_user(&app, "alice@example.com").await;
    let (bob, _, _) = plain_user(&app, "bob@example.com").await;
    projected(&app, &alice).await;
    projected(&app, &bob).await;

    assert_forbidden(&app, Method::GET, "/v1/users", &token, None).await;
    assert_forbidden(&app, Method::GET, &format!("/v1/users/{bob}"), &token, None).await;
    // One's own profile needs no permission.
    let own = assert_status(
        &app,
        Method::GET,
        &format!("/v1/users/{alice}"),
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(own["id"], alice.as_str());
    let me = assert_status(&app, Method::GET, "/v1/users/me", &token, None, 200).await;
    assert_eq!(me["id"], alice.as_str());
    assert_eq!(me["permissions"], json!([]));
    // Without a token at all: 401, not 403.
    let anonymous = app
        .request(Method::GET, "/v1/users", None)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "unauthorized", None).await;

    grant(&app, &alice, &token, "users:read").await;
    let page = assert_status(&app, Method::GET, "/v1/users", &token, None, 200).await;
    assert!(page["items"].as_array().unwrap().len() >= 3);
    let other = assert_status(
        &app,
        Method::GET,
        &format!("/v1/users/{bob}"),
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(other["id"], bob.as_str());
}

#[tokio::test]
async fn users_write_is_needed_to_change_other_users_and_to_register_in_closed_sign_up() {
    let app = spawn_app().await;
    let (alice, token, _) = plain_user(&app, "alice@example.com").await;
    let (bob, _, _) = plain_user(&app, "bob@example.com").await;
    let before = app.event_count().await;

    let rename = Some(json!({"display_name": "Renamed"}));
    let bob_path = format!("/v1/users/{bob}");
    assert_forbidden(&app, Method::PATCH, &bob_path, &token, rename.clone()).await;
    for action in ["deactivate", "reactivate"] {
        assert_forbidden(
            &app,
            Method::POST,
            &format!("{bob_path}/{action}"),
            &token,
            None,
        )
        .await;
    }
    assert_forbidden(
        &app,
        Method::POST,
        &format!("{bob_path}/password"),
        &token,
        Some(json!({"new_password": "a brand new password for bob"})),
    )
    .await;
    let carol = json!({"email": "carol@example.com", "password": support::GOOD_PASSWORD, "display_name": "Carol"});
    assert_forbidden(&app, Method::POST, "/v1/users", &token, Some(carol.clone())).await;
    // Sign-up is closed by default: without a token, 401.
    let anonymous = app
        .request(Method::POST, "/v1/users", None)
        .json(&carol)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "unauthorized", None).await;
    assert_eq!(app.event_count().await, before, "a refused request wrote");

    // One's own profile needs no permission.
    assert_status(
        &app,
        Method::PATCH,
        &format!("/v1/users/{alice}"),
        &token,
        Some(json!({"display_name": "Alice Herself"})),
        200,
    )
    .await;

    grant(&app, &alice, &token, "users:write").await;
    assert_status(&app, Method::PATCH, &bob_path, &token, rename, 200).await;
    for action in ["deactivate", "reactivate"] {
        assert_status(
            &app,
            Method::POST,
            &format!("{bob_path}/{action}"),
            &token,
            None,
            200,
        )
        .await;
    }
    assert_status(&app, Method::POST, "/v1/users", &token, Some(carol), 201).await;
    assert_eq!(
        support::count_events(&app.db, domain::UserEvent::REGISTERED.name()).await,
        4
    );
}

#[tokio::test]
async fn roles_read_is_needed_to_read_roles() {
    let app = spawn_app().await;
    let (alice, token, _) = plain_user(&app, "alice@example.com").await;
    let role = app.create_role("readers", &["users:read"]).await;
    let role_path = format!("/v1/roles/{role}");

    assert_forbidden(&app, Method::GET, "/v1/roles", &token, None).await;
    assert_forbidden(&app, Method::GET, &role_path, &token, None).await;

    grant(&app, &alice, &token, "roles:read").await;
    let list = assert_status(&app, Method::GET, "/v1/roles", &token, None, 200).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"readers") && names.contains(&"admin"),
        "{names:?}"
    );
    let read = assert_status(&app, Method::GET, &role_path, &token, None, 200).await;
    assert_eq!(read["name"], "readers");
}

#[tokio::test]
async fn roles_write_is_needed_to_change_roles_and_assignments() {
    let app = spawn_app().await;
    let (alice, token, _) = plain_user(&app, "alice@example.com").await;
    let (bob, _, _) = plain_user(&app, "bob@example.com").await;
    let role = app.create_role("editors", &["users:read"]).await;
    let held = app.create_role("held", &["users:read"]).await;
    let response = app
        .post_json(&format!("/v1/users/{bob}/roles"), &json!({"role_id": held}))
        .await;
    assert_eq!(response.status(), 200);
    let before = app.event_count().await;

    let create = Some(json!({"name": "mine", "permissions": ["users:read"]}));
    let set = Some(json!({"permissions": ["roles:read"]}));
    let assign = Some(json!({"role_id": role}));
    assert_forbidden(&app, Method::POST, "/v1/roles", &token, create.clone()).await;
    assert_forbidden(
        &app,
        Method::PUT,
        &format!("/v1/roles/{role}/permissions"),
        &token,
        set.clone(),
    )
    .await;
    assert_forbidden(
        &app,
        Method::DELETE,
        &format!("/v1/roles/{role}"),
        &token,
        None,
    )
    .await;
    assert_forbidden(
        &app,
        Method::POST,
        &format!("/v1/users/{bob}/roles"),
        &token,
        assign.clone(),
    )
    .await;
    // Not even to oneself.
    assert_forbidden(
        &app,
        Method::POST,
        &format!("/v1/users/{alice}/roles"),
        &token,
        assign.clone(),
    )
    .await;
    assert_forbidden(
        &app,
        Method::DELETE,
        &format!("/v1/users/{bob}/roles/{held}"),
        &token,
        None,
    )
    .await;
    assert_eq!(app.event_count().await, before, "a refused request wrote");
    assert!(permissions_of(&app, &token).await.is_empty());

    // Granting and taking away also needs what is granted or taken away
    // (see escalation.rs): users:read and roles:read here.
    for permission in ["roles:write", "users:read", "roles:read"] {
        grant(&app, &alice, &token, permission).await;
    }
    assert_status(&app, Method::POST, "/v1/roles", &token, create, 201).await;
    assert_status(
        &app,
        Method::PUT,
        &format!("/v1/roles/{role}/permissions"),
        &token,
        set,
        200,
    )
    .await;
    assert_status(
        &app,
        Method::POST,
        &format!("/v1/users/{bob}/roles"),
        &token,
        assign,
        200,
    )
    .await;
    assert_status(
        &app,
        Method::DELETE,
        &format!("/v1/users/{bob}/roles/{held}"),
        &token,
        None,
        200,
    )
    .await;
    assert_status(
        &app,
        Method::DELETE,
        &format!("/v1/roles/{role}"),
        &token,
        None,
        200,
    )
    .await;
}

#[tokio::test]
async fn sessions_read_is_needed_to_list_other_users_sessions() {
    let app = spawn_app().await;
    let (alice, token, own_session) = plain_user(&app, "alice@example.com").await;
    let (bob, _, bob_session) = plain_user(&app, "bob@example.com").await;

    assert_forbidden(
        &app,
        Method::GET,
        &format!("/v1/sessions?user_id={bob}"),
        &token,
        None,
    )
    .await;
    // One's own, named or not, needs no permission.
    for path in [
        "/v1/sessions".to_string(),
        format!("/v1/sessions?user_id={alice}"),
    ] {
        eventually(SHORT, "own session listed", || async {
            let list = assert_status(&app, Method::GET, &path, &token, None, 200).await;
            let items = list["items"].as_array().unwrap().clone();
            assert!(items.iter().all(|s| s["user_id"] == alice.as_str()));
            items
                .iter()
                .any(|s| s["session_id"] == own_session.as_str())
                .then_some(())
        })
        .await;
    }

    grant(&app, &alice, &token, "sessions:read").await;
    let path = format!("/v1/sessions?user_id={bob}");
    eventually(SHORT, "bob's session listed", || async {
        let list = assert_status(&app, Method::GET, &path, &token, None, 200).await;
        let items = list["items"].as_array().unwrap().clone();
        assert!(items.iter().all(|s| s["user_id"] == bob.as_str()));
        items
            .iter()
            .any(|s| s["session_id"] == bob_session.as_str())
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn sessions_revoke_is_needed_to_revoke_other_users_sessions() {
    let app = spawn_app().await;
    let (alice, token, _) = plain_user(&app, "alice@example.com").await;
    let (_, bob_token, bob_session) = plain_user(&app, "bob@example.com").await;
    let second = support::login(
        &app.client,
        &app.address,
        "alice@example.com",
        support::GOOD_PASSWORD,
    )
    .await;
    let second_session = second["session_id"].as_str().unwrap();
    let second_token = second["access_token"].as_str().unwrap();

    assert_forbidden(
        &app,
        Method::DELETE,
        &format!("/v1/sessions/{bob_session}"),
        &token,
        None,
    )
    .await;
    assert_eq!(app.get_as("/v1/sessions", &bob_token).await.status(), 200);
    // One's own other session needs no permission.
    assert_status(
        &app,
        Method::DELETE,
        &format!("/v1/sessions/{second_session}"),
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(app.get_as("/v1/sessions", second_token).await.status(), 401);

    grant(&app, &alice, &token, "sessions:revoke").await;
    assert_status(
        &app,
        Method::DELETE,
        &format!("/v1/sessions/{bob_session}"),
        &token,
        None,
        200,
    )
    .await;
    let refused = app.get_as("/v1/sessions", &bob_token).await;
    assert_problem(refused, 401, "unauthorized", None).await;
}

#[tokio::test]
async fn create_role_answers_201_with_location_and_refuses_a_name_taken_in_another_case() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/roles",
            &json!({"name": "Support", "description": "helps", "permissions": ["users:read", "sessions:read"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/roles/{id}"));
    let position = body["position"].as_i64().unwrap();
    let role: Value = app
        .get(&format!("{location}?min_position={position}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(role["id"], id);
    assert_eq!(role["name"], "Support");
    assert_eq!(role["description"], "helps");
    let permissions = support::sorted_strings(&role["permissions"]);
    assert_eq!(permissions, ["sessions:read", "users:read"]);

    let duplicate = app
        .post_json(
            "/v1/roles",
            &json!({"name": "sUPPORT", "permissions": ["users:write"]}),
        )
        .await;
    assert_problem(duplicate, 409, "conflict", None).await;
    // The admin role and this one.
    assert_eq!(
        support::count_events(&app.db, domain::RoleEvent::CREATED.name()).await,
        2
    );
    let claims: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM unique_claims WHERE scope = '{}' AND value = 'support' AND confirmed",
        domain::ClaimScope::ROLE_NAME.as_str()
    ))
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(claims, 1);
    assert_eq!(app.claim_count().await, app.baseline_claims + 1);
}

#[tokio::test]
async fn an_unknown_permission_is_named_and_nothing_is_written() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/roles",
            &json!({"name": "flyers", "permissions": ["users:read", "users:fly"]}),
        )
        .await;
    let problem = assert_problem(response, 422, "validation-failed", Some("permissions[1]")).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 1, "{problem}");
    assert_eq!(app.event_count().await, app.baseline_events);
    assert_eq!(app.claim_count().await, app.baseline_claims);

    // The name was not kept: it can be created now.
    let role = app.create_role("flyers", &["users:read"]).await;
    let before = app.event_count().await;
    let response = app
        .request(
            Method::PUT,
            &format!("/v1/roles/{role}/permissions"),
            Some(&app.admin_token),
        )
        .json(&json!({"permissions": ["nope", "roles:read"]}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "validation-failed", Some("permissions[0]")).await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn put_permissions_replaces_the_set() {
    let app = spawn_app().await;
    let role = app
        .create_role("shifting", &["users:read", "roles:read"])
        .await;
    let response = app
        .request(
            Method::PUT,
            &format!("/v1/roles/{role}/permissions"),
            Some(&app.admin_token),
        )
        .json(&json!({"permissions": ["sessions:read", "audit:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let position = body["position"].as_i64().unwrap();
    let read: Value = app
        .get(&format!("/v1/roles/{role}?min_position={position}"))
        .await
        .json()
        .await
        .unwrap();
    let permissions = support::sorted_strings(&read["permissions"]);
    assert_eq!(permissions, ["audit:read", "sessions:read"]);
}

#[tokio::test]
async fn a_deleted_role_frees_its_name_and_grants_nothing() {
    let app = spawn_app().await;
    let (alice, token, _) = plain_user(&app, "alice@example.com").await;
    let role = grant(&app, &alice, &token, "users:read").await;
    assert_eq!(app.get_as("/v1/users", &token).await.status(), 200);
    let name = "grants-users-read";

    let response = app
        .request(
            Method::DELETE,
            &format!("/v1/roles/{role}"),
            Some(&app.admin_token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let position = response.json::<Value>().await.unwrap()["position"]
        .as_i64()
        .unwrap();
    let gone = app
        .get(&format!("/v1/roles/{role}?min_position={position}"))
        .await;
    assert_problem(gone, 404, "not-found", None).await;
    let again = app
        .request(
            Method::DELETE,
            &format!("/v1/roles/{role}"),
            Some(&app.admin_token),
        )
        .send()
        .await
        .unwrap();
    assert_problem(again, 404, "not-found", None).await;

    // The holder lost the permission (the assignment itself remains).
    eventually(SHORT, "permission withdrawn", || async {
        permissions_of(&app, &token).await.is_empty().then_some(())
    })
    .await;
    assert_forbidden(&app, Method::GET, "/v1/users", &token, None).await;

    // The name is free again, in any case.
    app.create_role(&name.to_uppercase(), &["roles:read"]).await;
    // A deleted role cannot be assigned.
    let response = app
        .post_json(
            &format!("/v1/users/{alice}/roles"),
            &json!({"role_id": role}),
        )
        .await;
    assert_problem(response, 422, "validation-failed", Some("role_id")).await;
}

#[tokio::test]
async fn assigning_an_unknown_role_is_422_and_unassigning_a_role_not_held_is_404() {
    let app = spawn_app().await;
    let (alice, _, _) = plain_user(&app, "alice@example.com").await;
    let before = app.event_count().await;
    let response = app
        .post_json(
            &format!("/v1/users/{alice}/roles"),
            &json!({"role_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_problem(response, 422, "validation-failed", Some("role_id")).await;

    let role = app.create_role("unheld", &["users:read"]).await;
    let before_unassign = app.event_count().await;
    assert_eq!(before_unassign, before + 1);
    let response = app
        .request(
            Method::DELETE,
            &format!("/v1/users/{alice}/roles/{role}"),
            Some(&app.admin_token),
        )
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "not-found", None).await;
    assert_eq!(app.event_count().await, before_unassign);
}

/// Grants and revocations decide access as soon as their command answers,
/// in every api process, with no projector running (the read models never
/// move here): the administrator right after bootstrap, a role granted,
/// its permissions emptied and restored, unassigned, and deleted.
#[tokio::test]
async fn permission_changes_take_effect_at_once_without_the_projector() {
    let app = support::spawn_app_without_projector().await;
    // Right after `api admin bootstrap`.
    assert_status(&app, Method::GET, "/v1/users", &app.admin_token, None, 200).await;

    let created = app
        .post_json(
            "/v1/roles",
            &json!({"name": "readers", "description": "", "permissions": ["users:read"]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let role: Value = created.json().await.unwrap();
    let role_id = role["id"].as_str().unwrap().to_string();
    let (user_id, tokens) = app.user_with_session("reader@example.com").await;
    let token = tokens["access_token"].as_str().unwrap().to_string();
    assert_forbidden(&app, Method::GET, "/v1/users", &token, None).await;

    app.assign_role(&user_id, &role_id).await;
    assert_status(&app, Method::GET, "/v1/users", &token, None, 200).await;

    let permissions = format!("/v1/roles/{role_id}/permissions");
    let emptied = app
        .send(
            Method::PUT,
            &permissions,
            &app.admin_token,
            Some(json!({"permissions": []})),
        )
        .await;
    assert_eq!(emptied.status(), 200);
    assert_forbidden(&app, Method::GET, "/v1/users", &token, None).await;

    let restored = app
        .send(
            Method::PUT,
            &permissions,
            &app.admin_token,
            Some(json!({"permissions": ["users:read"]})),
        )
        .await;
    assert_eq!(restored.status(), 200);
    assert_status(&app, Method::GET, "/v1/users", &token, None, 200).await;

    let assignment = format!("/v1/users/{user_id}/roles/{role_id}");
    let unassigned = app
        .send(Method::DELETE, &assignment, &app.admin_token, None)
        .await;
    assert_eq!(unassigned.status(), 200);
    assert_forbidden(&app, Method::GET, "/v1/users", &token, None).await;

    app.assign_role(&user_id, &role_id).await;
    assert_status(&app, Method::GET, "/v1/users", &token, None, 200).await;
    let written = grants_table(&app).await;
    sqlx::query("SELECT rebuild_grants()")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(grants_table(&app).await, written, "rebuilt from the events");
    let deleted = app
        .send(
            Method::DELETE,
            &format!("/v1/roles/{role_id}"),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(deleted.status(), 200);
    assert_forbidden(&app, Method::GET, "/v1/users", &token, None).await;
}

/// Every grant, sorted: `(user or "", role name, permissions)`.
async fn grants_table(app: &TestApp) -> Vec<(String, String, Vec<String>)> {
    sqlx::query_as(
        "SELECT COALESCE(ur.user_id::text, ''), r.name, r.permissions \
         FROM role_grants r LEFT JOIN user_role_grants ur USING (role_id) ORDER BY 1, 2",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

/// A request whose `min_position` is past a grant is judged with the grant:
/// its authorization never waits for, nor lags behind, the projector.
#[tokio::test]
async fn a_request_past_a_grant_is_allowed_at_once() {
    let app = spawn_app().await;
    let (user_id, token, _) = plain_user(&app, "granted@example.com").await;
    let role_id = app.create_role("granted", &["users:read"]).await;
    let path = format!("/v1/users/{user_id}/roles");
    let assigned = app.post_json(&path, &json!({"role_id": role_id})).await;
    assert_eq!(assigned.status(), 200);
    let position = assigned.json::<Value>().await.unwrap()["position"]
        .as_i64()
        .unwrap();
    let path = format!("/v1/users?min_position={position}");
    assert_status(&app, Method::GET, &path, &token, None, 200).await;
}
