//! Auditors' view of the whole log: the list from the `audit_log` read
//! model (filters, cursors, read-your-writes) and the NDJSON export from the
//! event store, over HTTP and from the command line.

use std::collections::HashSet;
use std::time::Duration;

use bus::Envelope;
use chrono::{DateTime, Utc};
use domain::{ContractEvent, RoleEvent, UserEvent};
use infra::event_log::{self, LogPosition};
use infra::testing::{request_metadata, seed_renamed_users};
use reqwest::Method;
use serde_json::Value;

use crate::audit::ada_with_history;
use crate::support::{assert_problem, settled, spawn_app, TestApp, GOOD_PASSWORD};

/// The prefix that selects every user event.
fn user_prefix() -> String {
    format!("{}.", UserEvent::AGGREGATE_TYPE)
}

/// Every committed event, in publishing order.
async fn all_events(app: &TestApp) -> Vec<Envelope> {
    settled(&app.db.pool).await;
    event_log::read_committed_after(&app.db.pool, LogPosition::default(), i64::MAX)
        .await
        .expect("read the event store")
}

fn positions(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|item| item["global_position"].as_i64().expect("global_position"))
        .collect()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Every page of `/v1/audit/events?{query}`, following `next_cursor`
/// (oldest first: until a page comes back empty).
async fn walk(app: &TestApp, query: &str, order: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/audit/events?{query}&order={order}&limit={limit}{cursor}");
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let page: Value = response.json().await.expect("json");
        let page_items = page["items"].as_array().expect("items").clone();
        assert!(page_items.len() <= limit);
        let done = page_items.is_empty();
        items.extend(page_items);
        match page["next_cursor"].as_str() {
            Some(next) if !(done && order == "oldest") => cursor = format!("&cursor={next}"),
            _ => return items,
        }
    }
}

/// The export's lines, each checked to be one JSON document.
async fn export_lines(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/v1/audit/export?{query}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "{:?}",
        response.headers()
    );
    let text = response.text().await.expect("the body");
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON document per line"))
        .collect()
}

/// The events of an export, after checking its first and last lines, as
/// the list shows them (the proof each carries set aside).
fn exported_events(lines: Vec<Value>) -> Vec<Value> {
    let (header, rest) = lines.split_first().expect("a first line");
    assert_eq!(
        header["export"]["format"], "identity-audit-export/2",
        "{header}"
    );
    let (end, rest) = rest.split_last().expect("a last line");
    let events: Vec<Value> = rest
        .iter()
        .filter(|line| line.get("checkpoint").is_none())
        .map(|line| {
            let mut event = line.clone();
            let integrity = event.as_object_mut().unwrap().remove("integrity");
            assert!(integrity.is_some_and(|i| i["hash"].is_string()), "{line}");
            event
        })
        .collect();
    assert_eq!(end["end"]["events"], events.len(), "{end}");
    events
}

#[tokio::test]
async fn each_filter_alone_and_combined_selects_what_the_event_store_holds() {
    let app = spawn_app().await;
    let (ada, _) = ada_with_history(&app).await;
    let (bob, _) = app.register("bob@example.com", "Bob").await;
    let response = app.post_empty(&format!("/v1/users/{bob}/deactivate")).await;
    assert_eq!(response.status(), 200);
    // An event ada causes herself.
    let tokens = crate::support::login(
        &app.client,
        &app.address,
        "ada.lovelace@example.com",
        GOOD_PASSWORD,
    )
    .await;
    let access = tokens["access_token"].as_str().expect("access_token");
    let body = serde_json::json!({"display_name": "Countess"});
    let response = app
        .send(
            Method::PATCH,
            &format!("/v1/users/{ada}"),
            access,
            Some(body),
        )
        .await;
    assert_eq!(response.status(), 200);
    let newest: Value = response.json().await.unwrap();
    let newest = newest["position"].as_i64().expect("position");

    let events = all_events(&app).await;
    let email_changed = events
        .iter()
        .find(|e| e.event_type == UserEvent::EMAIL_CHANGED.name())
        .expect("ada's email change");
    let request = email_changed
        .metadata
        .correlation_id
        .clone()
        .expect("correlation id");
    let (from, to) = (
        email_changed.recorded_at,
        events.last().unwrap().recorded_at,
    );
    let admin = app.admin_id.clone();
    let ada_actor = ada.clone();
    let ada_id = ada.clone();
    type Predicate = Box<dyn Fn(&Envelope) -> bool>;
    let cases: Vec<(String, Predicate)> = vec![
        (String::new(), Box::new(|_| true)),
        (
            format!("aggregate_type={}", RoleEvent::AGGREGATE_TYPE),
            Box::new(|e| e.aggregate_type == RoleEvent::AGGREGATE_TYPE),
        ),
        (
            format!(
                "aggregate_type={}&aggregate_id={ada}",
                UserEvent::AGGREGATE_TYPE
            ),
            Box::new(move |e| e.aggregate_id == ada_id),
        ),
        (
            format!("event_type={}", user_prefix()),
            Box::new(|e| e.event_type.starts_with(&user_prefix())),
        ),
        (
            format!("event_type={}", RoleEvent::CREATED.name()),
            Box::new(|e| e.event_type == RoleEvent::CREATED.name()),
        ),
        (
            format!("actor_id={ada}"),
            Box::new(move |e| e.metadata.actor_id.as_deref() == Some(ada_actor.as_str())),
        ),
        (
            format!("correlation_id={request}"),
            Box::new(move |e| e.metadata.correlation_id.as_deref() == Some(request.as_str())),
        ),
        (
            format!("from={}&to={}", rfc3339(from), rfc3339(to)),
            Box::new(move |e| from <= e.recorded_at && e.recorded_at <= to),
        ),
        (
            format!(
                "aggregate_type={}&event_type={}&actor_id={admin}&from={}",
                UserEvent::AGGREGATE_TYPE,
                user_prefix(),
                rfc3339(from)
            ),
            Box::new(move |e| {
                e.aggregate_type == UserEvent::AGGREGATE_TYPE
                    && e.metadata.actor_id.as_deref() == Some(admin.as_str())
                    && e.recorded_at >= from
            }),
        ),
    ];
    // Waits for the audit projection to hold every event written above.
    let response = app
        .get(&format!("/v1/audit/events?min_position={newest}&limit=1"))
        .await;
    assert_eq!(response.status(), 200);
    for (query, predicate) in cases {
        let expected: Vec<i64> = events
            .iter()
            .filter(|e| predicate(e))
            .map(|e| e.global_position)
            .collect();
        assert!(
            !expected.is_empty(),
            "{query} selects nothing: a vacuous case"
        );
        let oldest = walk(&app, &query, "oldest", 2).await;
        assert_eq!(positions(&oldest), expected, "{query}, oldest first");
        let mut newest_first = positions(&walk(&app, &query, "newest", 3).await);
        newest_first.reverse();
        assert_eq!(newest_first, expected, "{query}, newest first");
        let exported = exported_events(export_lines(&app, &query).await);
        assert_eq!(positions(&exported), expected, "{query}, export");
        assert_eq!(
            exported, oldest,
            "{query}: the export's lines are the list's items"
        );
    }
}

#[tokio::test]
async fn list_items_show_who_did_what_from_where_with_a_summary_and_no_secret() {
    let app = spawn_app().await;
    let (ada, _) = ada_with_history(&app).await;
    let (_, newest) = app.register("bob@example.com", "Bob").await;
    let response = app
        .get(&format!(
            "/v1/audit/events?min_position={newest}&aggregate_id={ada}&order=oldest"
        ))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("projection-position"));
    let text = response.text().await.unwrap();
    assert!(!text.contains("$argon2"), "a password hash in {text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    let registered = &page["items"][0];
    assert_eq!(registered["event_type"], UserEvent::REGISTERED.name());
    assert_eq!(registered["summary"], "registered as ada@example.com (Ada)");
    assert_eq!(
        registered["payload"]["Registered"]["password_hash"],
        "[redacted]"
    );
    assert_eq!(registered["metadata"]["actor_id"], app.admin_id.as_str());
    assert_eq!(registered["metadata"]["request_ip"], "127.0.0.1");
    for field in [
        "event_id",
        "event_version",
        "aggregate_type",
        "sequence",
        "recorded_at",
    ] {
        assert!(!registered[field].is_null(), "{field} in {registered}");
    }
    assert!(
        registered["metadata"].get("user_agent").is_some(),
        "{registered}"
    );
    for field in ["correlation_id", "causation_id"] {
        assert!(
            registered["metadata"][field].is_string(),
            "{field} in {registered}"
        );
    }
    assert_eq!(
        page["items"][1]["summary"],
        "email changed to ada.lovelace@example.com (was ada@example.com)"
    );
}

#[tokio::test]
async fn malformed_parameters_are_400_problems_naming_the_parameter() {
    let app = spawn_app().await;
    let other_filter_cursor = {
        let page: Value = app
            .get("/v1/audit/events?limit=1&aggregate_type=user")
            .await
            .json()
            .await
            .unwrap();
        page["next_cursor"].as_str().expect("a cursor").to_owned()
    };
    let cases = [
        ("aggregate_type=order", "aggregate_type"),
        ("event_type=user", "event_type"),
        ("event_type=nothing.", "event_type"),
        ("aggregate_id=", "aggregate_id"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("cursor=bm90LWlzc3VlZA", "cursor"),
        // A cursor of another query, and one naming no event.
        (
            &format!("cursor={other_filter_cursor}&aggregate_type=role") as &str,
            "cursor",
        ),
        (
            "cursor=MTpuZXdlc3Q6OTk5OTk6OTk5OTk6MDAwMDAwMDAwMDAwMDAwMA",
            "cursor",
        ),
        ("min_position=-1", "min_position"),
        ("actor=ada", "actor"),
    ];
    for (query, parameter) in cases {
        let response = app.get(&format!("/v1/audit/events?{query}")).await;
        assert_problem(response, 400, "bad-request", Some(parameter)).await;
    }
    for (query, parameter) in [
        ("aggregate_type=order", "aggregate_type"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("limit=5", "limit"),
        ("cursor=abc", "cursor"),
    ] {
        let response = app.get(&format!("/v1/audit/export?{query}")).await;
        assert_problem(response, 400, "bad-request", Some(parameter)).await;
    }
}

/// Appends `transactions` transactions of 100 events each, pausing between them.
async fn keep_writing(pool: sqlx::PgPool, transactions: usize) {
    let metadata = request_metadata(None, "seeder");
    for _ in 0..transactions {
        let mut tx = pool.begin().await.expect("begin");
        seed_renamed_users(&mut tx, 10, 9, &metadata)
            .await
            .expect("seed");
        tx.commit().await.expect("commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_walk_while_writes_continue_sees_every_event_exactly_once() {
    let app = spawn_app().await;
    // Two writers at once, so that transactions commit out of position order.
    let writers = [
        tokio::spawn(keep_writing(app.db.pool.clone(), 25)),
        tokio::spawn(keep_writing(app.db.pool.clone(), 25)),
    ];
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let path = format!("/v1/audit/events?order=oldest&limit=400{cursor}");
        let page: Value = app.get(&path).await.json().await.expect("json");
        let items = page["items"].as_array().expect("items");
        seen.extend(positions(items));
        cursor = format!(
            "&cursor={}",
            page["next_cursor"].as_str().expect("a cursor")
        );
        if items.is_empty() {
            let writing = writers.iter().any(|writer| !writer.is_finished());
            if !writing && seen.len() as i64 == app.event_count().await {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} events seen",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let expected: Vec<i64> = all_events(&app)
        .await
        .iter()
        .map(|e| e.global_position)
        .collect();
    assert!(expected.len() >= 5000, "{} events", expected.len());
    let distinct: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "an event was listed twice");
    assert_eq!(seen, expected, "every event once, in publishing order");
}

/// Stores `users * (1 + renames)` events as if published long ago: the relay's
/// checkpoint moves past them in the same transaction, so only readers of the
/// event store (the export) see them.
async fn store_published(app: &TestApp, users: usize, renames: usize) {
    let mut tx = app.db.pool.begin().await.unwrap();
    let metadata = request_metadata(None, "seeder");
    let last = seed_renamed_users(&mut tx, users, renames, &metadata)
        .await
        .unwrap();
    relay::RELAY_CHECKPOINT
        .advance(&mut *tx, last)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_of_a_hundred_thousand_events_streams_complete_and_well_formed() {
    let app = spawn_app().await;
    store_published(&app, 1000, 99).await;
    let total = app.event_count().await;
    assert!(total >= 100_000);

    let response = app.get("/v1/audit/export").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let mut response = response;
    let mut buffer = Vec::new();
    let (mut lines, mut events, mut previous) = (0_i64, 0_i64, 0_i64);
    let mut end = None;
    while let Some(chunk) = response.chunk().await.expect("a chunk") {
        buffer.extend_from_slice(&chunk);
        while let Some(newline) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=newline).collect();
            let value: Value = serde_json::from_slice(&line).expect("a JSON line");
            lines += 1;
            if lines == 1 {
                assert_eq!(value["export"]["newest_global_position"], total, "{value}");
            } else if value.get("end").is_some() {
                end = Some(value);
            } else if value.get("checkpoint").is_some() {
                assert_eq!(events, 0, "a checkpoint after the events");
            } else {
                assert!(end.is_none(), "a line after the end line");
                let position = value["global_position"].as_i64().expect("an event");
                assert!(position > previous, "{position} after {previous}");
                assert!(value["summary"].is_string());
                previous = position;
                events += 1;
            }
        }
    }
    assert!(buffer.is_empty(), "a last line without a newline");
    assert_eq!(events, total);
    assert_eq!(end.expect("an end line")["end"]["events"], total);
}

#[tokio::test]
async fn the_export_command_writes_the_same_lines_to_a_file() {
    let app = spawn_app().await;
    ada_with_history(&app).await;
    store_published(&app, 30, 99).await;
    let dir = std::env::temp_dir().join(format!("audit-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("export.ndjson");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .args(["audit", "export", "--output"])
        .arg(&output)
        .args(["--event-type", &user_prefix()])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .expect("run api audit export");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = String::from_utf8(run.stdout).unwrap();
    let user_events = all_events(&app)
        .await
        .iter()
        .filter(|e| e.event_type.starts_with(&user_prefix()))
        .count();
    assert!(
        summary.contains(&format!("exported {user_events} events")),
        "{summary}"
    );
    assert!(!dir.join("export.ndjson.partial").exists());

    let file = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["export"]["filters"]["event_type"], user_prefix());
    let from_file = exported_events(lines);
    let over_http =
        exported_events(export_lines(&app, &format!("event_type={}", user_prefix())).await);
    assert_eq!(from_file.len(), user_events);
    assert_eq!(from_file, over_http);
    std::fs::remove_dir_all(&dir).unwrap();
}
