//! The API contract as tools see it: the served OpenAPI document is valid
//! (checked by `openapi-spec-validator`), every route it lists answers only
//! the methods and statuses it documents, and the eight defects found with
//! standard tools stay fixed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_problem, spawn_app, TestApp};

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `openapi-spec-validator`: the one scripts/test installs into
/// target/openapi-venv, else one on PATH.
fn validator() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/openapi-venv/bin/openapi-spec-validator");
    if venv.exists() {
        return Some(venv);
    }
    let on_path = Command::new("openapi-spec-validator")
        .arg("--help")
        .output();
    on_path
        .is_ok_and(|output| output.status.success())
        .then(|| PathBuf::from("openapi-spec-validator"))
}

#[tokio::test]
async fn the_served_document_is_valid_openapi() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let Some(validator) = validator() else {
        let in_ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
        assert!(
            !in_ci,
            "openapi-spec-validator is missing in CI (scripts/test installs it)"
        );
        eprintln!(
            "\n*** SKIPPED: openapi-spec-validator is not installed; \
             `bash scripts/test` installs it into target/openapi-venv ***\n"
        );
        return;
    };
    let file = std::env::temp_dir().join(format!("{}-openapi.json", app.db.name));
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let output = Command::new(&validator)
        .arg(&file)
        .output()
        .expect("run the validator");
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `(path, method, operation)` of every operation in the document.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((path.clone(), method.to_owned(), operation.clone()));
            }
        }
    }
    found
}

#[tokio::test]
async fn operation_ids_are_unique_and_every_response_is_described() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let mut ids = BTreeSet::new();
    for (path, method, operation) in operations(&document) {
        let id = operation["operationId"].as_str().expect("an operationId");
        assert!(
            ids.insert(id.to_owned()),
            "{method} {path}: operationId {id} repeats"
        );
        for (status, response) in operation["responses"].as_object().unwrap() {
            let description = response["description"].as_str().unwrap_or_default();
            assert!(
                !description.is_empty(),
                "{method} {path} {status}: no description"
            );
        }
    }
    for path in [
        "/.well-known/jwks.json",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
        "/v1/auth/session",
    ] {
        assert!(
            document["paths"][path]["get"].is_object(),
            "{path} undocumented"
        );
    }
}

#[tokio::test]
async fn the_schemas_carry_the_rules_the_api_enforces() {
    let app = spawn_app().await;
    let schemas = &document(&app).await["components"]["schemas"];
    let register = &schemas["RegisterRequest"]["properties"];
    assert_eq!(register["email"]["format"], "email");
    assert_eq!(register["email"]["maxLength"], 254);
    assert_eq!(register["password"]["minLength"], 12);
    assert_eq!(register["password"]["maxLength"], 128);
    assert_eq!(register["display_name"]["maxLength"], 100);
    assert_eq!(schemas["UpdateProfileRequest"]["minProperties"], 1);
    let role = &schemas["CreateRoleRequest"]["properties"];
    assert_eq!(role["name"]["maxLength"], 64);
    assert!(role["name"]["pattern"].is_string());
    assert_eq!(role["description"]["maxLength"], 500);
    let names: Vec<&str> = role["permissions"]["items"]["enum"]
        .as_array()
        .expect("permission names")
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    let known: Vec<&str> = domain::Permission::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(names, known);
}

/// Every documented route answers its documented methods with documented
/// statuses (tried without a token, with a refused token, as the admin with
/// a body of the wrong type and with an unknown id), answers any other
/// method with 405 and an `Allow` of the documented ones, and `HEAD` like
/// `GET` without a body.
#[tokio::test]
async fn every_route_answers_only_documented_methods_and_statuses() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{aggregate_type}", "user")
            .replace("{role_id}", &unknown)
            .replace("{id}", &unknown);
        let served: Vec<&str> = METHODS
            .iter()
            .copied()
            .filter(|m| item.get(*m).is_some())
            .collect();
        let mut allow: Vec<String> = served.iter().map(|m| m.to_uppercase()).collect();
        if served.contains(&"get") {
            allow.insert(1, "HEAD".into());
        }
        for method in METHODS {
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let Some(operation) = item.get(method) else {
                let response = app
                    .request(verb, &concrete, Some(&app.admin_token))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    response
                        .headers()
                        .get("allow")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    Some(allow.join(", ")),
                    "{method} {path}: Allow"
                );
                assert_problem(response, 405, "method-not-allowed", None).await;
                continue;
            };
            let documented: BTreeSet<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|status| status.parse().unwrap())
                .collect();
            let mut tries = vec![
                ("no token", app.request(verb.clone(), &concrete, None)),
                (
                    "a refused token",
                    app.request(verb.clone(), &concrete, Some("not-a-token")),
                ),
                (
                    "the admin",
                    app.request(verb.clone(), &concrete, Some(&app.admin_token)),
                ),
            ];
            if operation.get("requestBody").is_some() {
                tries.push((
                    "a text body",
                    app.request(verb.clone(), &concrete, Some(&app.admin_token))
                        .body("x"),
                ));
                tries.push((
                    "an array body",
                    app.request(verb.clone(), &concrete, Some(&app.admin_token))
                        .json(&json!([])),
                ));
            }
            for (what, request) in tries {
                let status = request.send().await.unwrap().status().as_u16();
                assert!(
                    documented.contains(&status),
                    "{method} {path} with {what} answered {status}, documented {documented:?}"
                );
            }
        }
        if served.contains(&"get") && !path.contains("export") {
            let head = app
                .request(Method::HEAD, &concrete, Some(&app.admin_token))
                .send()
                .await
                .unwrap();
            let get = app
                .request(Method::GET, &concrete, Some(&app.admin_token))
                .send()
                .await
                .unwrap();
            assert_eq!(head.status(), get.status(), "HEAD {path}");
            assert!(
                head.bytes().await.unwrap().is_empty(),
                "HEAD {path} has a body"
            );
        }
    }
}

#[tokio::test]
async fn a_position_never_issued_is_refused_at_once() {
    let app = spawn_app().await;
    let (id, position) = app.register("ahead@example.com", "Ahead").await;
    let started = std::time::Instant::now();
    let far = position + 1_000_000;
    for path in [
        format!("/v1/users/{id}?min_position={far}"),
        format!("/v1/users?min_position={far}"),
    ] {
        assert_problem(
            app.get(&path).await,
            400,
            "bad-request",
            Some("min_position"),
        )
        .await;
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test]
async fn a_refused_bearer_token_is_an_invalid_token_challenge() {
    let app = spawn_app().await;
    let refused = app.get_as("/v1/users/me", "garbage").await;
    assert_eq!(
        refused.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_problem(refused, 401, "unauthorized", None).await;
    let anonymous = app
        .request(Method::GET, "/v1/users/me", None)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn an_array_for_an_object_names_no_rust_type() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/auth/login", None)
        .json(&json!(["admin@example.com", "password"]))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400, "bad-request", None).await;
    let text = problem.to_string();
    assert!(
        !text.contains("struct") && !text.contains("LoginRequest"),
        "{text}"
    );
    assert!(text.contains("JSON object"), "{text}");
}

#[tokio::test]
async fn a_health_route_asked_with_another_method_is_a_405() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let response = app.request(Method::POST, path, None).send().await.unwrap();
        assert_eq!(response.headers()["allow"], "GET, HEAD", "{path}");
        assert_problem(response, 405, "method-not-allowed", None).await;
        let head = app.request(Method::HEAD, path, None).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
    }
}
