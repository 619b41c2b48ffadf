//! docs/audit-log-specification.md is enough to verify an export: the
//! verifier written from it alone, in Python
//! (examples/python-verifier/verify_export.py), accepts real exports fetched
//! over HTTP (whole and filtered, before and after an erasure, with trusted
//! checkpoints), rejects altered ones, and agrees with the test vectors.
//!
//! The interpreter: `AUDIT_VERIFIER_PYTHON`, else target/verifier-venv
//! (scripts/test creates it), else a `python3` on PATH that has
//! `cryptography`. With CI=true a missing one fails the tests; otherwise
//! they are skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::audit::ada_with_history;
use crate::integrity::every_event_checkpointed;
use crate::support::{spawn_app_with, TestApp};

/// A checkpoint every 4 events, and one for the tail within a second.
const CHECKPOINTS_OFTEN: [&str; 2] = [
    "--audit-checkpoint-every-events=4",
    "--audit-checkpoint-every-seconds=1",
];

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn has_cryptography(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// The Python to run the verifier with, or `None` (then the test is
/// skipped, except in CI, where it fails).
fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("AUDIT_VERIFIER_PYTHON").map(PathBuf::from),
        Some(repository().join("target/verifier-venv/bin/python3")),
        Some(PathBuf::from("python3")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|python| has_cryptography(python));
    if found.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
        assert!(
            !in_ci,
            "no Python with `cryptography` for the outside verifier in CI \
             (scripts/test creates target/verifier-venv)"
        );
        eprintln!(
            "\n*** SKIPPED: no Python with `cryptography`; `bash scripts/test` creates \
             target/verifier-venv, or set AUDIT_VERIFIER_PYTHON ***\n"
        );
    }
    found
}

/// Runs the Python verifier with `args`: whether it exited 0, and its report.
fn run_verifier(python: &Path, args: &[&str]) -> (bool, Value) {
    let output = Command::new(python)
        .arg(repository().join("examples/python-verifier/verify_export.py"))
        .args(args)
        .output()
        .expect("run the Python verifier");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "the verifier printed no report:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let ok = output.status.success();
    assert_eq!(
        Some(ok),
        report["ok"].as_bool(),
        "the exit status disagrees with the report: {report}"
    );
    (ok, report)
}

/// A scratch directory for one test's files.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("outside-verifier-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn export(app: &TestApp, query: &str) -> String {
    let response = app.get(&format!("/v1/audit/export{query}")).await;
    assert_eq!(response.status(), 200, "export{query}");
    response.text().await.unwrap()
}

/// The keys as `GET /v1/audit/keys` gives them (JSON), and as SPKI PEM.
async fn public_keys(app: &TestApp, scratch: &Scratch) -> (String, String) {
    let response = app.get("/v1/audit/keys").await;
    assert_eq!(response.status(), 200);
    let keys: Value = response.json().await.unwrap();
    let pem: String = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["public_key_pem"].as_str().unwrap())
        .collect();
    (
        scratch.write("keys.json", keys.to_string()),
        scratch.write("keys.pem", pem),
    )
}

fn lines(export: &str) -> Vec<String> {
    export.lines().map(str::to_owned).collect()
}

fn joined(lines: &[String]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn is_event(line: &str) -> bool {
    line.starts_with("{\"event_id\"")
}

fn assert_not_ok(report: &Value, reasons: &[&str], what: &str) {
    assert_eq!(report["ok"], false, "{what} verified: {report}");
    let reason = report["first_broken"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reasons.contains(&reason), "{what}: {report}");
}

#[tokio::test]
async fn the_python_verifier_accepts_real_exports_and_catches_alterations() {
    let Some(python) = python() else { return };
    let app = spawn_app_with(&CHECKPOINTS_OFTEN).await;
    let (ada, _) = ada_with_history(&app).await;
    let (bob, _) = app.user_with_session("bob@example.com").await;
    let role = app.create_role("auditor", &["audit:read"]).await;
    app.assign_role(&bob, &role).await;
    every_event_checkpointed(&app).await;
    let scratch = Scratch::new();
    let (keys_json, keys_pem) = public_keys(&app, &scratch).await;

    let whole = export(&app, "").await;
    let whole_file = scratch.write("whole.ndjson", &whole);
    let (ok, report) = run_verifier(&python, &["--public-key", &keys_json, &whole_file]);
    assert!(ok, "{report}");
    assert_eq!(
        report["events_checked"],
        app.event_count().await,
        "{report}"
    );
    assert!(
        report["checkpoints_checked"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(
        report["events_proven"], report["events_checked"],
        "{report}"
    );
    assert_eq!(report["unproven_tail"]["events"], 0, "{report}");
    assert_eq!(report["filtered"], false, "{report}");

    let filtered = export(&app, &format!("?aggregate_type=user&aggregate_id={ada}")).await;
    let filtered_file = scratch.write("filtered.ndjson", &filtered);
    let (ok, report) = run_verifier(&python, &["--public-key", &keys_pem, &filtered_file]);
    assert!(ok, "{report}");
    assert_eq!(report["filtered"], true, "{report}");
    assert_eq!(report["events_checked"], 3, "{report}");
    assert_eq!(report["checkpoints_checked"], 0, "{report}");
    let by_type = export(&app, "?event_type=user.").await;
    let by_type_file = scratch.write("by-type.ndjson", &by_type);
    let (ok, report) = run_verifier(&python, &["--public-key", &keys_pem, &by_type_file]);
    assert!(ok, "{report}");

    // One byte of a payload value: ada's new address, in her user.email_changed.
    let original = lines(&whole);
    let mut altered = original.clone();
    let line = altered
        .iter_mut()
        .find(|line| line.contains("\"EmailChanged\""))
        .expect("ada's email change");
    *line = line.replacen(
        "\"email\":\"ada.lovelace@example.com\"",
        "\"email\":\"ada.lovelace@exbmple.com\"",
        1,
    );
    let file = scratch.write("altered.ndjson", joined(&altered));
    let (_, report) = run_verifier(&python, &["--public-key", &keys_json, &file]);
    assert_not_ok(&report, &["seal_mismatch"], "a changed payload byte");
    assert!(
        report["first_broken"]["detail"]
            .as_str()
            .unwrap()
            .contains("/payload/EmailChanged/email"),
        "{report}"
    );

    // Two event lines swapped.
    let events: Vec<usize> = (0..original.len())
        .filter(|&i| is_event(&original[i]))
        .collect();
    let mut swapped = original.clone();
    swapped.swap(events[1], events[2]);
    let file = scratch.write("swapped.ndjson", joined(&swapped));
    let (_, report) = run_verifier(&python, &["--public-key", &keys_json, &file]);
    assert_not_ok(
        &report,
        &[
            "broken_link",
            "checkpoint_mismatch",
            "checkpoint_event_missing",
        ],
        "two swapped lines",
    );

    // An event line dropped, and the end line's count made to match.
    let mut dropped = original.clone();
    dropped.remove(events[2]);
    let end = dropped.len() - 1;
    dropped[end] = format!("{{\"end\":{{\"events\":{}}}}}", events.len() - 1);
    let file = scratch.write("dropped.ndjson", joined(&dropped));
    let (_, report) = run_verifier(&python, &["--public-key", &keys_json, &file]);
    assert_not_ok(
        &report,
        &[
            "broken_link",
            "checkpoint_mismatch",
            "checkpoint_event_missing",
        ],
        "a dropped line",
    );

    // The header's filters rewritten: a filtered export passed off as the
    // whole log. Without checkpoint lines nothing is proven (the report says
    // so), and trusted checkpoints find it out.
    let mut passed_off = lines(&filtered);
    passed_off[0] = passed_off[0].replacen(
        &format!("\"filters\":{{\"aggregate_type\":\"user\",\"aggregate_id\":\"{ada}\"}}"),
        "\"filters\":{}",
        1,
    );
    assert!(
        passed_off[0].contains("\"filters\":{}"),
        "{}",
        passed_off[0]
    );
    let passed_off_file = scratch.write("passed-off.ndjson", joined(&passed_off));
    let (_, report) = run_verifier(&python, &["--public-key", &keys_json, &passed_off_file]);
    assert_eq!(report["filtered"], false, "{report}");
    assert_eq!(report["events_proven"], 0, "{report}");
    assert_eq!(report["unproven_tail"]["events"], 3, "{report}");
    let trusted: Vec<String> = original
        .iter()
        .filter(|line| line.starts_with("{\"checkpoint\""))
        .cloned()
        .collect();
    let trusted_file = scratch.write("trusted.ndjson", joined(&trusted));
    let (_, report) = run_verifier(
        &python,
        &[
            "--public-key",
            &keys_json,
            "--trusted-checkpoints",
            &trusted_file,
            &passed_off_file,
        ],
    );
    assert_not_ok(
        &report,
        &["trusted_checkpoint_missing"],
        "a passed-off export",
    );

    // Markers the service does not write: an address erased without an
    // erasure on record, a role's name erased.
    for (event_type, variant, field) in [
        ("user.registered", "Registered", "email"),
        ("role.created", "Created", "name"),
    ] {
        let mut marked = original.clone();
        let line = marked
            .iter_mut()
            .find(|line| line.contains(&format!("\"event_type\":\"{event_type}\"")))
            .expect(event_type);
        let mut event: Value = serde_json::from_str(line).unwrap();
        event["payload"][variant][field] = Value::from("[erased]");
        event["integrity"]["salts"]["payload"][variant][field] = Value::Null;
        *line = event.to_string();
        let file = scratch.write("marked.ndjson", joined(&marked));
        let (_, report) = run_verifier(&python, &["--public-key", &keys_json, &file]);
        assert_not_ok(&report, &["unexpected_erasure"], event_type);
        assert!(
            report["first_broken"]["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("/payload/{variant}/{field}")),
            "{report}"
        );
    }

    // Trusted checkpoints: those of this export match it; those of a later
    // one are not all in it (its tail, as if cut).
    let (ok, report) = run_verifier(
        &python,
        &[
            "--public-key",
            &keys_pem,
            "--trusted-checkpoints",
            &trusted_file,
            &whole_file,
        ],
    );
    assert!(ok, "{report}");
    assert_eq!(
        report["trusted_checkpoints_matched"],
        trusted.len(),
        "{report}"
    );
    let (carol, _) = app.user_with_session("carol@example.com").await;
    every_event_checkpointed(&app).await;
    let later: Vec<String> = lines(&export(&app, "").await)
        .into_iter()
        .filter(|line| line.starts_with("{\"checkpoint\""))
        .collect();
    let later_file = scratch.write("later.ndjson", joined(&later));
    let (_, report) = run_verifier(
        &python,
        &[
            "--public-key",
            &keys_pem,
            "--trusted-checkpoints",
            &later_file,
            &whole_file,
        ],
    );
    assert_not_ok(
        &report,
        &["trusted_checkpoint_missing"],
        "an export older than a trusted checkpoint",
    );

    // After carol's erasure: her stream (with its user.erased) and the
    // sessions (without it, so their markers cannot be confirmed).
    let response = app.post_empty(&format!("/v1/users/{carol}/erase")).await;
    assert_eq!(response.status(), 200);
    every_event_checkpointed(&app).await;
    let hers = export(&app, &format!("?aggregate_type=user&aggregate_id={carol}")).await;
    assert!(!hers.contains("carol@example.com") && hers.contains("[erased]"));
    let file = scratch.write("carol.ndjson", &hers);
    let (ok, report) = run_verifier(&python, &["--public-key", &keys_json, &file]);
    assert!(ok, "{report}");
    let sessions = export(&app, "?aggregate_type=session").await;
    let file = scratch.write("sessions.ndjson", &sessions);
    let (ok, report) = run_verifier(&python, &["--public-key", &keys_json, &file]);
    assert!(ok, "{report}");
    assert!(
        report["erasure_markers_unconfirmed"].as_u64().unwrap() > 0,
        "{report}"
    );

    let vectors = repository().join("docs/audit-log-vectors.json");
    let (ok, report) = run_verifier(&python, &["--vectors", vectors.to_str().unwrap()]);
    assert!(ok, "{report}");
}

#[tokio::test]
async fn the_python_verifier_accepts_a_whole_export_after_an_erasure() {
    let Some(python) = python() else { return };
    let app = spawn_app_with(&CHECKPOINTS_OFTEN).await;
    let (carol, _) = app.user_with_session("carol@example.com").await;
    let response = app.post_empty(&format!("/v1/users/{carol}/erase")).await;
    assert_eq!(response.status(), 200);
    every_event_checkpointed(&app).await;
    let scratch = Scratch::new();
    let (keys_json, _) = public_keys(&app, &scratch).await;

    let whole = export(&app, "").await;
    assert!(!whole.contains("carol@example.com"), "the erased address");
    assert!(whole.contains("[erased]"));
    let file = scratch.write("whole.ndjson", &whole);
    let (ok, report) = run_verifier(&python, &["--public-key", &keys_json, &file]);
    assert!(ok, "{report}");
}

/// The service's own export verifier agrees with the specification's
/// vectors too: their export verifies with their key.
#[test]
fn the_rust_export_verifier_accepts_the_vectors_export() {
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(repository().join("docs/audit-log-vectors.json")).unwrap(),
    )
    .unwrap();
    let keys =
        infra::integrity::PublicKeys::from_pem(vectors["key"]["public_key_pem"].as_str().unwrap())
            .unwrap();
    let mut verifier = app::integrity::ExportVerifier::new(keys, Vec::new());
    for line in vectors["export"].as_array().unwrap() {
        verifier.feed(line.as_str().unwrap()).unwrap();
    }
    let report = serde_json::to_value(verifier.finish()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events_checked"], 3, "{report}");
    assert_eq!(report["checkpoints_checked"], 1, "{report}");
}
