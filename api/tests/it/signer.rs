//! The checkpoint signer against a database administrator who can edit any
//! row but does not hold the signing key: it signs only a log it has
//! checked that extends what it last signed (its state file), says so when
//! it refuses, and goes on only after an operator acknowledges; checkpoints
//! leave the database (broker, `api audit checkpoints`) and trusted copies
//! catch what the database no longer shows; erased and redacted values are
//! accepted only where the rules allow; a report says what is proven.

use std::time::Duration;

use domain::{RoleEvent, UserEvent, ERASED};
use infra::integrity::{CheckpointLine, CHECKPOINT_ROUTING_KEY};
use infra::testing::{eventually, scrape, TestDatabase, TestTopology};
use serde_json::Value;

use crate::integrity::{
    assert_broken, audit_command, every_event_checkpointed, execute, sealed_history, verified,
};
use crate::support::{projector_group, start_api_with, TestApp, GOOD_PASSWORD};

const SETTLE: Duration = Duration::from_secs(30);

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("signer-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn checkpoint_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn health(app: &TestApp) -> Value {
    app.get("/health/ready").await.json().await.unwrap()
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

async fn refusing_state(port: u16) -> f64 {
    scrape(port).await.families[relay::metrics::SIGNER_REFUSING].samples[0].value
}

/// Waits until the signer refuses with `reason`, and checks it signed nothing since.
async fn assert_refuses(app: &TestApp, reason: &str, checkpoints_before: i64) {
    let found = eventually(SETTLE, "the signer to refuse", || async {
        let health = health(app).await;
        (health["audit_signer"]["status"] == "refusing").then_some(health)
    })
    .await;
    assert_eq!(found["audit_signer"]["found"]["reason"], reason, "{found}");
    // Well past the checkpoint interval (1 s) and the retry: still nothing signed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(checkpoint_count(app).await, checkpoints_before);
    assert_eq!(health(app).await["audit_signer"]["status"], "refusing");
}

/// What the attacker found described: delete a stream and every checkpoint
/// from its first event on, and recompute `audit_chain_head` by SQL.
#[tokio::test]
async fn a_rewritten_log_is_not_signed_and_trusted_checkpoints_catch_it() {
    let (app, ada, _) = sealed_history().await;
    let dir = temp_dir();
    let trusted = dir.join("checkpoints.ndjson");
    let (saved, printed) = audit_command(
        &app,
        &["checkpoints", "--output", trusted.to_str().unwrap()],
    );
    assert!(saved, "{printed}");
    assert_eq!(health(&app).await["audit_signer"]["status"], "signing");

    execute(
        &app.db.pool,
        &format!(
            "DELETE FROM audit_checkpoints WHERE (transaction_id, global_position) >= \
               (SELECT transaction_id::text::bigint, global_position FROM events \
                WHERE aggregate_id = '{ada}' AND sequence = 1);
             DELETE FROM events WHERE aggregate_id = '{ada}';"
        ),
    )
    .await;
    execute(
        &app.db.pool,
        "DO $$ DECLARE e record; running text := ''; n bigint := 0; BEGIN
           FOR e IN SELECT * FROM events ORDER BY transaction_id, global_position LOOP
             running := encode(sha256(convert_to('identity-log/1', 'UTF8') || hash_field(running)
                 || hash_field(e.hash) || hash_field(e.transaction_id::text)
                 || hash_field(e.global_position::text)), 'hex');
             n := n + 1;
             UPDATE audit_chain_head SET transaction_id = e.transaction_id::text::bigint,
                 global_position = e.global_position, running_hash = running, event_count = n;
           END LOOP; END $$",
    )
    .await;
    let remaining = checkpoint_count(&app).await;
    app.register("carol@example.com", "Carol").await;
    app.register("dave@example.com", "Dave").await;

    assert_refuses(&app, "state_not_extended", remaining).await;
    let (ok, report) = audit_command(
        &app,
        &["verify", "--trusted-checkpoints", trusted.to_str().unwrap()],
    );
    assert!(!ok, "{report}");
    assert!(report.contains("trusted_checkpoint_missing"), "{report}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The refusal as monitoring sees it, on a real api process's /metrics
/// (the in-process apps of the other tests share one metrics registry).
#[tokio::test]
async fn a_refusing_signer_sets_its_gauge_in_the_process_metrics() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let often = [
        ("AUDIT_CHECKPOINT_EVERY_EVENTS", "2"),
        ("AUDIT_CHECKPOINT_EVERY_SECONDS", "1"),
    ];
    let api = start_api_with(&db, &topology, &often, None).await;
    let port = port_of(&api.address);
    let client = reqwest::Client::new();
    let register = |n: u32| {
        let client = client.clone();
        let url = format!("{}/v1/users", api.address);
        async move {
            let answer = client
                .post(url)
                .json(&serde_json::json!({"email": format!("m{n}@example.com"),
                    "password": GOOD_PASSWORD, "display_name": "M"}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 201);
        }
    };
    register(1).await;
    register(2).await;
    eventually(SETTLE, "a checkpoint", || async {
        let signed: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        (signed > 0).then_some(())
    })
    .await;
    assert_eq!(refusing_state(port).await, 0.0);

    execute(&db.pool, "DELETE FROM audit_checkpoints").await;
    register(3).await;
    register(4).await;
    eventually(SETTLE, "the gauge to say refusing", || async {
        (refusing_state(port).await == 1.0).then_some(())
    })
    .await;
    let health: Value = client
        .get(format!("{}/health/ready", api.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["audit_signer"]["status"], "refusing", "{health}");
    assert_eq!(
        health["audit_signer"]["found"]["reason"], "state_not_extended",
        "{health}"
    );
}

/// An older backup restored: the newest checkpoints and the events after
/// an older one are gone. Refused until acknowledged; the acknowledgement
/// is an event, and signing resumes from the older checkpoint.
#[tokio::test]
async fn an_older_backup_is_refused_until_an_operator_acknowledges_it() {
    let (app, _, _) = sealed_history().await;
    let checkpoints = checkpoint_count(&app).await;
    assert!(checkpoints >= 3, "{checkpoints}");
    execute(
        &app.db.pool,
        "WITH kept AS (SELECT transaction_id, global_position FROM audit_checkpoints \
                       ORDER BY transaction_id, global_position OFFSET 1 LIMIT 1) \
         DELETE FROM events WHERE (transaction_id::text::bigint, global_position) > \
                                  (SELECT transaction_id, global_position FROM kept);
         DELETE FROM audit_checkpoints WHERE (transaction_id, global_position) > \
             (SELECT transaction_id, global_position FROM audit_checkpoints \
              ORDER BY transaction_id, global_position OFFSET 1 LIMIT 1);",
    )
    .await;
    app.register("erin@example.com", "Erin").await;
    assert_refuses(&app, "state_not_extended", 2).await;

    let (acknowledged, printed) = audit_command(
        &app,
        &["acknowledge", "--reason", "restored the backup of 06:00"],
    );
    assert!(acknowledged, "{printed}");
    every_event_checkpointed(&app).await;
    eventually(SETTLE, "the signer to sign again", || async {
        (health(&app).await["audit_signer"]["status"] == "signing").then_some(())
    })
    .await;
    let acknowledgements: Vec<Value> =
        sqlx::query_scalar("SELECT payload::jsonb FROM events WHERE event_type = $1")
            .bind(domain::AuditSignerEvent::LOG_ACKNOWLEDGED.name())
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(acknowledgements.len(), 1, "{acknowledgements:?}");
    let acknowledged = &acknowledgements[0]["LogAcknowledged"];
    assert_eq!(acknowledged["reason"], "restored the backup of 06:00");
    assert!(
        acknowledged["previous"]["event_count"].as_i64().unwrap()
            > acknowledged["adopted"]["event_count"].as_i64().unwrap(),
        "{acknowledged}"
    );
    let report = verified(&app).await;
    assert_eq!(report["ok"], true, "{report}");
    let (again, printed) = audit_command(&app, &["acknowledge", "--reason", "again"]);
    assert!(!again, "nothing to acknowledge: {printed}");
    assert!(printed.contains("nothing to acknowledge"), "{printed}");
}

/// Each signed checkpoint is published under its own routing key, exactly
/// as stored; `api audit checkpoints` writes the same lines.
#[tokio::test]
async fn checkpoints_leave_the_database_as_they_are_made() {
    let (app, _, _) = sealed_history().await;
    let connection = lapin::Connection::connect(
        &infra::testing::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            app.topology.topology.exchange.as_str().into(),
            CHECKPOINT_ROUTING_KEY.into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let before = checkpoint_count(&app).await;
    app.register("frank@example.com", "Frank").await;
    app.register("grace@example.com", "Grace").await;
    every_event_checkpointed(&app).await;
    let after = checkpoint_count(&app).await;
    assert!(after > before);

    let mut published = Vec::new();
    while (published.len() as i64) < after - before {
        let message = eventually(SETTLE, "a published checkpoint", || async {
            channel
                .basic_get(queue.name().clone(), Default::default())
                .await
                .unwrap()
        })
        .await;
        let line: CheckpointLine = serde_json::from_slice(&message.data).unwrap();
        published.push(line.checkpoint);
    }
    let dir = temp_dir();
    let file = dir.join("checkpoints.ndjson");
    let (saved, printed) =
        audit_command(&app, &["checkpoints", "--output", file.to_str().unwrap()]);
    assert!(saved, "{printed}");
    let saved: Vec<infra::integrity::Checkpoint> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<CheckpointLine>(line)
                .unwrap()
                .checkpoint
        })
        .collect();
    assert_eq!(saved.len() as i64, after);
    assert_eq!(&saved[before as usize..], &published[..]);
    let (ok, report) = audit_command(
        &app,
        &["verify", "--trusted-checkpoints", file.to_str().unwrap()],
    );
    assert!(ok, "{report}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["trusted_checkpoints_matched"], after, "{report}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Sets `path` (a jsonb path under `payload` or `metadata`) of the events
/// `which` selects to "[erased]" with no salt, as a database administrator
/// would to blank a value unnoticed; returns how to put the rows back.
async fn blank(app: &TestApp, column: &str, path: &str, which: &str) -> String {
    let restore: Vec<(String, String, i64, String, Value)> = sqlx::query_as(&format!(
        "SELECT aggregate_type, aggregate_id, sequence, {column}::text, salts FROM events WHERE {which}"
    ))
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert!(!restore.is_empty(), "{which}");
    execute(
        &app.db.pool,
        &format!(
            "UPDATE events SET {column} = jsonb_set({column}::jsonb, '{path}', '\"{ERASED}\"')::json, \
                 salts = jsonb_set(salts, '{{{column},{}}}', 'null') WHERE {which}",
            path.trim_matches(|c| c == '{' || c == '}')
        ),
    )
    .await;
    restore
        .into_iter()
        .map(|(kind, id, sequence, value, salts)| {
            format!(
                "UPDATE events SET {column} = $${value}$$::json, salts = $${salts}$$::jsonb \
                 WHERE aggregate_type = '{kind}' AND aggregate_id = '{id}' AND sequence = {sequence};"
            )
        })
        .collect()
}

#[tokio::test]
async fn an_erasure_marker_where_no_erasure_is_recorded_is_reported() {
    let (app, ada, _) = sealed_history().await;
    let role_created = RoleEvent::CREATED;
    let role_assigned = UserEvent::ROLE_ASSIGNED;
    let registered = UserEvent::REGISTERED;
    let cases = [
        (
            "a permission",
            "payload",
            format!("{{{},permissions,0}}", role_created.variant()),
            format!("event_type = '{role_created}'"),
        ),
        (
            "a role id",
            "payload",
            format!("{{{},role_id}}", role_assigned.variant()),
            format!("event_type = '{role_assigned}'"),
        ),
        (
            "an actor id",
            "metadata",
            "{actor_id}".to_owned(),
            format!("event_type = '{role_assigned}' AND aggregate_id = '{ada}'"),
        ),
        (
            "the email of a user never erased",
            "payload",
            format!("{{{},email}}", registered.variant()),
            format!("event_type = '{registered}' AND aggregate_id = '{ada}'"),
        ),
    ];
    for (what, column, path, which) in cases {
        let restore = blank(&app, column, &path, &which).await;
        let report = verified(&app).await;
        assert_broken(&report, "unexpected_erasure", None);
        assert!(
            report["first_broken"]["detail"].as_str().unwrap().contains(
                path.trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .next_back()
                    .unwrap()
            ),
            "{what}: {report}"
        );
        execute(&app.db.pool, &restore).await;
        assert_eq!(verified(&app).await["ok"], true, "{what} restored");
    }
}

/// `api audit verify --export` with the keys (and optionally trusted checkpoints).
fn verify_export(
    app: &TestApp,
    export: &std::path::Path,
    keys: &std::path::Path,
    trusted: Option<&std::path::Path>,
) -> (bool, Value) {
    let mut args = vec![
        "verify",
        "--export",
        export.to_str().unwrap(),
        "--public-key",
        keys.to_str().unwrap(),
    ];
    if let Some(trusted) = trusted {
        args.extend(["--trusted-checkpoints", trusted.to_str().unwrap()]);
    }
    let (ok, printed) = audit_command(app, &args);
    let report = serde_json::from_str(
        printed
            .lines()
            .take_while(|l| !l.starts_with("Error"))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .unwrap_or_else(|_| panic!("not a report: {printed}"));
    (ok, report)
}

/// The checkpoints travel inside the file they protect: an export stripped
/// of its newer checkpoints, with two streams' events swapped and the last
/// event dropped (end count fixed), still verifies, but its report shows
/// the unproven tail, and the checkpoints kept elsewhere catch it.
#[tokio::test]
async fn an_export_says_what_is_proven_and_trusted_checkpoints_catch_a_forged_tail() {
    let (app, _, _) = sealed_history().await;
    let dir = temp_dir();
    let keys = dir.join("audit.pub");
    let (printed, pem) = audit_command(&app, &["public-key"]);
    assert!(printed, "{pem}");
    std::fs::write(&keys, pem).unwrap();
    let trusted = dir.join("checkpoints.ndjson");
    let (saved, printed) = audit_command(
        &app,
        &["checkpoints", "--output", trusted.to_str().unwrap()],
    );
    assert!(saved, "{printed}");

    let export = app.get("/v1/audit/export").await.text().await.unwrap();
    let honest = dir.join("honest.ndjson");
    std::fs::write(&honest, &export).unwrap();
    let (ok, report) = verify_export(&app, &honest, &keys, Some(&trusted));
    assert!(ok, "{report}");
    assert_eq!(
        report["events_proven"], report["events_checked"],
        "{report}"
    );
    assert_eq!(report["unproven_tail"]["events"], 0, "{report}");
    assert_eq!(report["filtered"], false, "{report}");
    assert!(
        report["trusted_checkpoints_matched"].as_u64().unwrap() >= 2,
        "{report}"
    );

    let lines: Vec<&str> = export.lines().collect();
    let kept_checkpoint = *lines
        .iter()
        .find(|line| line.starts_with("{\"checkpoint\""))
        .unwrap();
    let first_checkpoint: Value = serde_json::from_str(kept_checkpoint).unwrap();
    let proven = first_checkpoint["checkpoint"]["event_count"]
        .as_u64()
        .unwrap();
    let mut events: Vec<&str> = lines
        .iter()
        .filter(|line| line.starts_with("{\"event_id\""))
        .copied()
        .collect();
    let (a, b) = (events.len() - 3, events.len() - 2);
    let stream = |line: &str| serde_json::from_str::<Value>(line).unwrap()["aggregate_id"].clone();
    assert_ne!(stream(events[a]), stream(events[b]), "two streams' events");
    assert!(a as u64 >= proven, "both after the checkpoint kept");
    events.swap(a, b);
    events.pop();
    let mut forged = vec![lines[0].to_owned(), kept_checkpoint.to_string()];
    forged.extend(events.iter().map(|line| line.to_string()));
    forged.push(format!("{{\"end\":{{\"events\":{}}}}}", events.len()));
    let forged_file = dir.join("forged.ndjson");
    std::fs::write(&forged_file, forged.join("\n") + "\n").unwrap();

    let (ok, report) = verify_export(&app, &forged_file, &keys, None);
    assert!(ok, "each event and stream still checks: {report}");
    assert_eq!(report["events_proven"], proven, "{report}");
    assert_eq!(
        report["unproven_tail"]["events"].as_u64().unwrap(),
        events.len() as u64 - proven,
        "{report}"
    );
    assert_eq!(
        report["unproven_tail"]["after_global_position"],
        first_checkpoint["checkpoint"]["global_position"],
        "{report}"
    );
    let (ok, report) = verify_export(&app, &forged_file, &keys, Some(&trusted));
    assert!(!ok, "{report}");
    assert_eq!(
        report["first_broken"]["reason"], "trusted_checkpoint_missing",
        "{report}"
    );

    let filtered = app
        .get("/v1/audit/export?aggregate_type=user")
        .await
        .text()
        .await
        .unwrap();
    let filtered_file = dir.join("filtered.ndjson");
    std::fs::write(&filtered_file, filtered).unwrap();
    let (ok, report) = verify_export(&app, &filtered_file, &keys, None);
    assert!(ok, "{report}");
    assert_eq!(report["filtered"], true, "{report}");
    assert_eq!(report["events_proven"], 0, "{report}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A crash after a checkpoint was stored but before the state file was
/// written (or a standby relay whose state file is older): the state names
/// an older checkpoint the log still holds and extends, so the signer checks
/// the newer ones against its own fold, adopts them and goes on signing.
#[tokio::test]
async fn a_state_file_behind_the_log_catches_up_without_a_refusal() {
    let (app, _, _) = sealed_history().await;
    let key_file = crate::support::audit_key_file(&app.db);
    let state_file = infra::integrity::SignerStateFile::new(infra::integrity::signer_state_file(
        std::path::Path::new(&key_file),
    ));
    let stored = infra::integrity::stored_checkpoints(&app.db.pool, None)
        .await
        .unwrap();
    assert!(stored.len() >= 2, "{stored:?}");
    state_file
        .store(&infra::integrity::SignerState {
            last_signed: Some(stored[0].clone()),
        })
        .unwrap();

    app.register("heidi@example.com", "Heidi").await;
    every_event_checkpointed(&app).await;
    let newest = infra::integrity::stored_checkpoints(&app.db.pool, None)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(newest.event_count > stored.last().unwrap().event_count);
    eventually(SETTLE, "the state file to catch up", || async {
        let state = state_file.load().unwrap().unwrap();
        (state.last_signed.as_ref() == Some(&newest)).then_some(())
    })
    .await;
    assert_eq!(health(&app).await["audit_signer"]["status"], "signing");
    assert_eq!(verified(&app).await["ok"], true);
}
