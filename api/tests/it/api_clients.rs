//! The OpenAPI document as tools outside the project read it, against a
//! running app: schemathesis fuzzes every operation from the document
//! alone, and a client that openapi-python-client generates from it runs
//! an integrator's journey (`examples/generated-client/journey.py`)
//! unmodified. Both come from PyPI into the outside clients' Python
//! (`target/oauth-client-venv`, which `scripts/test` makes); without them
//! the tests are skipped with a message unless `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{outside_python, repository, spawn_app_with, ADMIN_EMAIL, GOOD_PASSWORD};

/// Webhooks to a local address are allowed, so that a journey can register one.
const APP_SETTINGS: [&str; 4] = [
    "--webhooks-allow-http=true",
    "--webhooks-allow-private-networks=true",
    "--auth-rate-per-second=100000",
    "--auth-rate-burst=100000",
];

/// A console script installed beside the outside clients' Python.
fn beside(python: &Path, tool: &str) -> PathBuf {
    python.with_file_name(tool)
}

/// Runs `command` off the runtime's threads (the app answers it meanwhile).
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run an outside tool"))
        .await
        .expect("the tool's thread")
}

/// What a tool printed, for a failure message: all of its standard output
/// (a report of every failure), the end of its standard error.
fn report(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let stderr = lines[lines.len().saturating_sub(40)..].join("\n");
    format!(
        "{what}: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    )
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_nothing_the_document_does_not_say() {
    let Some(python) = outside_python("schemathesis") else {
        return;
    };
    let app = spawn_app_with(&APP_SETTINGS).await;
    // Every check but `positive_data_acceptance`: the document cannot say
    // that a password is not a common one or that a role id names a role.
    // Logging out would end the administrator's session for the rest of
    // the run.
    // Its cache (`.schemathesis/`) goes to the working directory: not the tree.
    let scratch = std::env::temp_dir().join(format!("{}-schemathesis", app.db.name));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    let mut schemathesis = Command::new(beside(&python, "schemathesis"));
    schemathesis.current_dir(&scratch);
    schemathesis.args([
        "run",
        &format!("{}/openapi.json", app.address),
        "--header",
        &format!("Authorization: Bearer {}", app.admin_token),
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--exclude-path",
        "/v1/auth/logout",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "5",
        "--seed",
        "1",
        "--no-color",
    ]);
    let output = run(schemathesis).await;
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        output.status.success(),
        "{}",
        report("schemathesis", &output)
    );
    // The run's figures, for whoever reads the test's output.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let figures: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.starts_with("Test cases:"))
        .take(2)
        .collect();
    eprintln!("schemathesis: {}", figures.join(" "));
}

#[tokio::test]
async fn a_generated_python_client_runs_an_integrators_journey_unmodified() {
    let Some(python) = outside_python("openapi_python_client, httpx, attrs") else {
        return;
    };
    let app = spawn_app_with(&APP_SETTINGS).await;
    let clients = std::env::temp_dir().join(format!("{}-clients", app.db.name));
    let _ = std::fs::remove_dir_all(&clients);
    std::fs::create_dir_all(&clients).expect("a directory for the client");
    let examples = repository().join("examples/generated-client");
    let mut generator = Command::new(beside(&python, "openapi-python-client"));
    generator
        .args([
            "generate",
            "--url",
            &format!("{}/openapi.json", app.address),
        ])
        .arg("--output-path")
        .arg(clients.join("identity_client"))
        .args(["--meta", "none", "--config"])
        .arg(examples.join("generator.yaml"));
    let generated = run(generator).await;
    assert!(
        generated.status.success(),
        "{}",
        report("openapi-python-client", &generated)
    );
    let warnings = String::from_utf8_lossy(&generated.stdout);
    assert!(
        !warnings.contains("WARNING"),
        "the generator skipped part of the document: {}",
        report("openapi-python-client", &generated)
    );

    let mut script = Command::new(&python);
    script.arg(examples.join("journey.py")).arg(&clients).args([
        &app.address,
        ADMIN_EMAIL,
        GOOD_PASSWORD,
    ]);
    let journey = run(script).await;
    let _ = std::fs::remove_dir_all(&clients);
    let stdout = String::from_utf8_lossy(&journey.stdout);
    assert!(journey.status.success(), "{}", report("journey", &journey));
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    let (passed, steps) = last
        .strip_prefix("journey: ")
        .and_then(|rest| rest.strip_suffix(" steps"))
        .and_then(|rest| rest.split_once(" of "))
        .expect("the journey's last line counts its steps");
    assert_eq!(passed, steps, "{stdout}");
    assert!(steps.parse::<u32>().unwrap() >= 20, "{stdout}");
    eprintln!("{stdout}");
}
