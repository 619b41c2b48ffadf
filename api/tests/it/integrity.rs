//! The log proves itself: `GET /v1/audit/verify` and `api audit verify`
//! (database and export) say ok on an untouched store, and catch and
//! pinpoint each way an attacker with direct database access could alter it.

use std::time::Duration;

use domain::{PayloadField, UserEvent};
use infra::testing::eventually;
use serde_json::Value;
use sqlx::PgPool;

use crate::audit::ada_with_history;
use crate::support::{spawn_app_with, TestApp};

/// A checkpoint every 4 events, and one for the tail within a second.
pub const CHECKPOINTS_OFTEN: [&str; 2] = [
    "--audit-checkpoint-every-events=4",
    "--audit-checkpoint-every-seconds=1",
];

/// Ada (registered, email changed, role assigned), Bob (registered), and
/// every event folded and covered by a checkpoint.
pub async fn sealed_history() -> (TestApp, String, String) {
    let app = spawn_app_with(&CHECKPOINTS_OFTEN).await;
    let (ada, _) = ada_with_history(&app).await;
    let (bob, _) = app.register("bob@example.com", "Bob").await;
    every_event_checkpointed(&app).await;
    (app, ada, bob)
}

pub async fn every_event_checkpointed(app: &TestApp) {
    let pool = app.db.pool.clone();
    eventually(Duration::from_secs(30), "a checkpoint of every event", || {
        let pool = pool.clone();
        async move {
            let (events, covered): (i64, Option<i64>) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM events), (SELECT max(event_count) FROM audit_checkpoints)",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (covered == Some(events)).then_some(())
        }
    })
    .await;
}

/// The report of a full pass asked for now (`POST /v1/audit/verify`),
/// once the background verifier has made it.
pub async fn verified(app: &TestApp) -> Value {
    let asked_at = chrono::Utc::now();
    let response = app.post_empty("/v1/audit/verify").await;
    assert_eq!(response.status(), 202);
    eventually(
        Duration::from_secs(30),
        "a full pass after the request",
        || async {
            let response = app.get("/v1/audit/verify").await;
            assert_eq!(response.status(), 200);
            let report: Value = response.json().await.unwrap();
            let started: Option<chrono::DateTime<chrono::Utc>> =
                serde_json::from_value(report["pass_started_at"].clone()).unwrap();
            let done = report["full_pass_requested"] == false
                && started.is_some_and(|started| started >= asked_at)
                && report["pending"] == false;
            done.then_some(report)
        },
    )
    .await
}

pub async fn execute(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Rewrites, as an attacker with SQL would, the address in `user`'s
/// `user.email_changed` (its second event).
async fn set_email_changed_to(pool: &PgPool, user: &str, email: &str) {
    let path = path_of(UserEvent::EMAIL_CHANGED_EMAIL);
    execute(
        pool,
        &format!(
            "UPDATE events SET payload = jsonb_set(payload::jsonb, '{path}', to_jsonb('{email}'::text))::json \
             WHERE aggregate_id = '{user}' AND sequence = 2"
        ),
    )
    .await;
}

/// `{Variant,field}`: the jsonb path of a payload field.
fn path_of(field: PayloadField) -> String {
    format!("{{{},{}}}", field.event_type.variant(), field.field)
}

/// Asserts the report names `reason` (and, if given, the event).
pub fn assert_broken(report: &Value, reason: &str, at: Option<(&str, i64)>) {
    assert_eq!(report["ok"], false, "{report}");
    let broken = &report["first_broken"];
    assert_eq!(broken["reason"], reason, "{report}");
    if let Some((aggregate_id, sequence)) = at {
        assert_eq!(broken["aggregate_id"], aggregate_id, "{report}");
        assert_eq!(broken["sequence"], sequence, "{report}");
    }
}

#[tokio::test]
async fn an_untouched_store_verifies_with_every_checkpoint() {
    let (app, _, _) = sealed_history().await;
    let report = verified(&app).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events_checked"], app.event_count().await);
    assert!(
        report["checkpoints_checked"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert!(report["first_broken"].is_null());

    let keys: Value = app.get("/v1/audit/keys").await.json().await.unwrap();
    let key = &keys["keys"][0];
    assert!(
        key["public_key_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN PUBLIC KEY"),
        "{keys}"
    );
    assert_eq!(key["key_id"].as_str().unwrap().len(), 16);
}

#[tokio::test]
async fn a_payload_field_changed_by_sql_is_caught_at_its_event() {
    let (app, ada, _) = sealed_history().await;
    set_email_changed_to(&app.db.pool, &ada, "eve@example.com").await;
    let report = verified(&app).await;
    assert_broken(&report, "seal_mismatch", Some((&ada, 2)));
    assert!(
        report["first_broken"]["detail"]
            .as_str()
            .unwrap()
            .contains("email"),
        "{report}"
    );
}

#[tokio::test]
async fn a_metadata_field_changed_is_caught_at_its_event() {
    let (app, _, bob) = sealed_history().await;
    execute(
        &app.db.pool,
        &format!(
            "UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{{{}}}', '\"203.0.113.66\"')::json \
             WHERE aggregate_id = '{bob}' AND sequence = 1",
            bus::metadata_keys::REQUEST_IP
        ),
    )
    .await;
    assert_broken(&verified(&app).await, "seal_mismatch", Some((&bob, 1)));
}

#[tokio::test]
async fn an_event_deleted_from_the_middle_of_a_stream_is_caught_after_the_gap() {
    let (app, ada, _) = sealed_history().await;
    execute(
        &app.db.pool,
        &format!("DELETE FROM events WHERE aggregate_id = '{ada}' AND sequence = 2"),
    )
    .await;
    assert_broken(&verified(&app).await, "broken_link", Some((&ada, 3)));
}

#[tokio::test]
async fn two_events_payloads_swapped_are_caught() {
    let (app, ada, bob) = sealed_history().await;
    execute(
        &app.db.pool,
        &format!(
            "UPDATE events e SET payload = o.payload FROM events o \
             WHERE e.sequence = 1 AND o.sequence = 1 AND \
                   ((e.aggregate_id = '{ada}' AND o.aggregate_id = '{bob}') OR \
                    (e.aggregate_id = '{bob}' AND o.aggregate_id = '{ada}'))"
        ),
    )
    .await;
    let report = verified(&app).await;
    assert_broken(&report, "seal_mismatch", None);
    let at = report["first_broken"]["aggregate_id"].as_str().unwrap();
    assert!(at == ada || at == bob, "{report}");
}

#[tokio::test]
async fn a_whole_stream_deleted_is_caught_by_the_next_checkpoint() {
    let (app, _, bob) = sealed_history().await;
    execute(
        &app.db.pool,
        &format!("DELETE FROM events WHERE aggregate_id = '{bob}'"),
    )
    .await;
    let report = verified(&app).await;
    assert_eq!(report["ok"], false, "{report}");
    let reason = report["first_broken"]["reason"].as_str().unwrap();
    assert!(
        reason == "checkpoint_mismatch" || reason == "checkpoint_event_missing",
        "{report}"
    );
}

#[tokio::test]
async fn a_stream_rewritten_with_fresh_hashes_is_caught_by_the_checkpoints() {
    let (app, ada, _) = sealed_history().await;
    // The attacker reseals and rehashes ada's stream with the database's own
    // functions, so her chain is whole again; only the signed running hash can tell.
    set_email_changed_to(&app.db.pool, &ada, "eve@example.com").await;
    execute(
        &app.db.pool,
        &format!(
            "DO $$ DECLARE e record; s jsonb; t jsonb; ms jsonb; mt jsonb; resealed text; prev text; BEGIN
               FOR e IN SELECT * FROM events WHERE aggregate_id = '{ada}' ORDER BY sequence LOOP
                 SELECT * INTO s, t FROM seal_value(e.payload::jsonb);
                 SELECT * INTO ms, mt FROM seal_value(e.metadata::jsonb);
                 resealed := jsonb_build_object('payload', s, 'metadata', ms)::text;
                 prev := previous_event_hash(e.aggregate_type, e.aggregate_id, e.sequence);
                 UPDATE events SET sealed = resealed::json,
                     salts = jsonb_build_object('payload', t, 'metadata', mt), prev_hash = prev,
                     hash = event_hash_v2(prev, e.event_id, e.aggregate_type, e.aggregate_id,
                                          e.sequence, e.event_type, e.event_version, resealed,
                                          e.recorded_at)
                 WHERE aggregate_id = e.aggregate_id AND sequence = e.sequence;
               END LOOP; END $$"
        ),
    )
    .await;
    assert_broken(&verified(&app).await, "checkpoint_mismatch", None);
}

#[tokio::test]
async fn the_tail_deleted_before_the_last_checkpoint_is_caught() {
    let (app, _, _) = sealed_history().await;
    execute(
        &app.db.pool,
        "DELETE FROM events WHERE global_position > (SELECT max(global_position) - 2 FROM events)",
    )
    .await;
    assert_broken(&verified(&app).await, "checkpoint_event_missing", None);
}

#[tokio::test]
async fn an_altered_checkpoint_is_caught_by_its_signature() {
    for alteration in [
        "UPDATE audit_checkpoints SET running_hash = repeat('0', 64) \
         WHERE global_position = (SELECT min(global_position) FROM audit_checkpoints)",
        "UPDATE audit_checkpoints SET signature = \
           (SELECT signature FROM audit_checkpoints ORDER BY global_position DESC LIMIT 1) \
         WHERE global_position = (SELECT min(global_position) FROM audit_checkpoints)",
    ] {
        let (app, _, _) = sealed_history().await;
        execute(&app.db.pool, alteration).await;
        assert_broken(&verified(&app).await, "bad_signature", None);
    }
}

/// Runs `api audit <args>` on the app's database; (success, stdout).
pub fn audit_command(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("audit")
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env(
            "AUDIT_SIGNING_KEY_FILE",
            crate::support::audit_key_file(&app.db),
        )
        .env("AUDIT_GENERATE_KEY", "false")
        .output()
        .expect("run api audit");
    let mut printed = String::from_utf8(output.stdout).unwrap();
    if !output.status.success() {
        printed.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    (output.status.success(), printed)
}

#[tokio::test]
async fn an_export_verifies_alone_with_the_public_key_and_one_changed_byte_is_caught() {
    let (app, _, _) = sealed_history().await;
    let dir = std::env::temp_dir().join(format!("verify-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (printed, pem) = audit_command(&app, &["public-key"]);
    assert!(printed && pem.contains("BEGIN PUBLIC KEY"), "{pem}");
    let key_file = dir.join("audit.pub");
    std::fs::write(&key_file, &pem).unwrap();
    let key = key_file.to_str().unwrap();

    let (verified_store, report) = audit_command(&app, &["verify", "--public-key", key]);
    assert!(verified_store, "{report}");

    let export = app.get("/v1/audit/export").await.text().await.unwrap();
    let export_file = dir.join("export.ndjson");
    std::fs::write(&export_file, &export).unwrap();
    let exported = export_file.to_str().unwrap();
    let (ok, report) = audit_command(&app, &["verify", "--export", exported, "--public-key", key]);
    assert!(ok, "{report}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["events_checked"], app.event_count().await);
    assert!(
        report["checkpoints_checked"].as_u64().unwrap() >= 2,
        "{report}"
    );

    // One byte of ada's new address, in the event line that carries it.
    let target = export
        .find("ada.lovelace@example.com")
        .expect("the address in the export");
    let mut altered = export.into_bytes();
    altered[target] = b'e';
    std::fs::write(&export_file, &altered).unwrap();
    let (ok, report) = audit_command(&app, &["verify", "--export", exported, "--public-key", key]);
    assert!(!ok, "a changed byte verified: {report}");
    assert!(report.contains("seal_mismatch"), "{report}");

    // Another key than the one that signed.
    let other = dir.join("other.pub");
    std::fs::write(
        &other,
        infra::integrity::public_key_pem(&ed25519_dalek_key()),
    )
    .unwrap();
    std::fs::write(&export_file, altered_back(&altered, target)).unwrap();
    let (ok, report) = audit_command(
        &app,
        &[
            "verify",
            "--export",
            exported,
            "--public-key",
            other.to_str().unwrap(),
        ],
    );
    assert!(!ok && report.contains("bad_signature"), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn altered_back(altered: &[u8], at: usize) -> Vec<u8> {
    let mut bytes = altered.to_vec();
    bytes[at] = b'a';
    bytes
}

/// A public key nobody signed with.
fn ed25519_dalek_key() -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32]).verifying_key()
}

#[tokio::test]
async fn after_an_erasure_the_store_and_an_export_still_verify_and_tampering_is_still_caught() {
    let (app, ada, _) = sealed_history().await;
    let response = app.post_empty(&format!("/v1/users/{ada}/erase")).await;
    assert_eq!(response.status(), 200);
    every_event_checkpointed(&app).await;
    let report = verified(&app).await;
    assert_eq!(report["ok"], true, "{report}");

    let dir = std::env::temp_dir().join(format!("verify-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("audit.pub");
    std::fs::write(&key_file, audit_command(&app, &["public-key"]).1).unwrap();
    let export = app.get("/v1/audit/export").await.text().await.unwrap();
    assert!(
        !export.contains("ada.lovelace@example.com"),
        "the export holds the erased email"
    );
    let export_file = dir.join("export.ndjson");
    std::fs::write(&export_file, &export).unwrap();
    let (ok, report) = audit_command(
        &app,
        &[
            "verify",
            "--export",
            export_file.to_str().unwrap(),
            "--public-key",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{report}");
    std::fs::remove_dir_all(&dir).unwrap();

    // Putting an erased value back is caught: its salt is gone.
    set_email_changed_to(&app.db.pool, &ada, "ada.lovelace@example.com").await;
    let report = verified(&app).await;
    assert_broken(&report, "seal_mismatch", Some((&ada, 2)));
    assert!(
        report["first_broken"]["detail"]
            .as_str()
            .unwrap()
            .contains("not erased"),
        "{report}"
    );
}

/// `GET /v1/audit/verify` recomputes nothing: with the background verifier
/// off in this process, it answers at once that nothing is verified yet.
#[tokio::test]
async fn the_verify_endpoint_only_reads_what_the_background_verifier_found() {
    let mut args = CHECKPOINTS_OFTEN.to_vec();
    args.push("--audit-verify-interval-ms=0");
    let app = spawn_app_with(&args).await;
    ada_with_history(&app).await;
    every_event_checkpointed(&app).await;
    let report: Value = app.get("/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(report["pending"], true, "{report}");
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["events_checked"], 0, "{report}");
    let asked = app.post_empty("/v1/audit/verify").await;
    assert_eq!(asked.status(), 202);
    let report: Value = asked.json().await.unwrap();
    assert_eq!(report["full_pass_requested"], true, "{report}");
}

/// The state the verifier resumes from, as stored.
async fn standing(app: &TestApp) -> Value {
    sqlx::query_scalar::<_, Value>("SELECT state FROM audit_verification")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// After a full pass, each run checks only the events after where the last
/// one stopped (the pass does not start again), catches a change to such
/// an event, and a change to an event verified before waits for the next
/// full pass, which finds it.
#[tokio::test]
async fn runs_continue_from_where_the_last_one_stopped() {
    let (app, ada, _) = sealed_history().await;
    let first = verified(&app).await;
    assert_eq!(first["ok"], true, "{first}");
    let folded = standing(&app).await["events_folded"].as_i64().unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(folded, events, "the first pass folds every event");

    app.register("carol@example.com", "Carol").await;
    every_event_checkpointed(&app).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let state = eventually(Duration::from_secs(30), "the new events folded", || async {
        let state = standing(&app).await;
        (state["events_folded"].as_i64() == Some(events)).then_some(state)
    })
    .await;
    assert_eq!(
        state["pass_started_at"], first["pass_started_at"],
        "no new pass: the run continued"
    );

    // An event verified before, changed: runs read only what is new, so the
    // standing report keeps its verdict until a full pass looks again.
    set_email_changed_to(&app.db.pool, &ada, "mallory@example.com").await;
    app.register("dave@example.com", "Dave").await;
    every_event_checkpointed(&app).await;
    let events = events + 1;
    eventually(Duration::from_secs(30), "dave folded", || async {
        (standing(&app).await["events_folded"].as_i64() >= Some(events)).then_some(())
    })
    .await;
    let report: Value = app.get("/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(
        report["pass_started_at"], first["pass_started_at"],
        "{report}"
    );
    assert_eq!(report["ok"], true, "{report}");
    assert_broken(&verified(&app).await, "seal_mismatch", Some((&ada, 2)));
}

/// One process at a time verifies: while another holds the verifier's
/// lock, no run starts here.
#[tokio::test]
async fn runs_wait_while_another_process_verifies() {
    let (app, _, _) = sealed_history().await;
    verified(&app).await;
    let mut other = app.db.pool.acquire().await.unwrap();
    let (space, key) = app::integrity::VERIFIER_LOCK;
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(space)
        .bind(key)
        .execute(&mut *other)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = standing(&app).await["verified_at"].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        standing(&app).await["verified_at"],
        held,
        "no run while held"
    );
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(space)
        .bind(key)
        .execute(&mut *other)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "a run once released", || async {
        (standing(&app).await["verified_at"] != held).then_some(())
    })
    .await;
}
