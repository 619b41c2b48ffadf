//! `bench --quick` once, against the debug builds of api, projector and
//! worker: every figure of the catalogue is produced (present in the JSON,
//! finite, with its limit and ratio where it has a limit). No speed is
//! asserted: a debug build on a shared machine measures nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use bench::catalogue::FIGURES;
use serde_json::Value;

/// The workspace's target directory (CARGO_TARGET_DIR when set).
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench is in the workspace")
        .to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

fn debug_binary(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: the quick bench runs the debug builds of api, projector and worker; \
         build them first (`cargo build -p api -p projector -p worker`; \
         `cargo test --workspace` builds them too)",
        path.display()
    );
    path
}

fn finite(figure: &Value, pointer: &str) -> f64 {
    let value = figure
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    assert!(
        value.is_finite(),
        "{}: {pointer} is not a finite number in {figure}",
        figure["key"]
    );
    value
}

#[test]
fn a_quick_run_produces_every_figure() {
    let binaries = ["api", "projector", "worker"].map(debug_binary);
    let json = std::env::temp_dir().join(format!("bench-quick-{}.json", uuid::Uuid::new_v4()));
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--quick")
        .arg("--api-bin")
        .arg(&binaries[0])
        .arg("--projector-bin")
        .arg(&binaries[1])
        .arg("--worker-bin")
        .arg(&binaries[2])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run the bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench --quick failed ({}):\n{}",
        output.status,
        stderr
    );
    let text = std::fs::read_to_string(&json).expect("the bench wrote its JSON");
    let _ = std::fs::remove_file(&json);
    let table: Value = serde_json::from_str(&text).expect("the JSON parses");
    assert_eq!(table["quick"], true);
    let figures = table["figures"].as_array().expect("a list of figures");
    for spec in FIGURES {
        let figure = figures
            .iter()
            .find(|figure| figure["key"] == spec.key)
            .unwrap_or_else(|| panic!("no figure {} in {text}", spec.key));
        finite(figure, "/value");
        if spec.limit.is_some() {
            assert!(
                finite(figure, "/limit/value") > 0.0,
                "{}: a zero limit",
                spec.key
            );
            finite(figure, "/ratio");
        }
    }
    assert_eq!(
        figures.len(),
        FIGURES.len(),
        "figures outside the catalogue"
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    for spec in FIGURES {
        assert!(
            printed.contains(spec.label),
            "{} not in the table:\n{printed}",
            spec.label
        );
    }
}
