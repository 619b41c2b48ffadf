//! The `ops/` folder: Prometheus's own checks of the scrape configuration
//! and alert rules (`promtool check config`, which checks the rules too),
//! the rules' unit tests (`promtool test rules`), and docker-compose's
//! `observability` profile (`docker-compose config`).
//!
//! promtool is Debian's `prometheus` package and docker-compose Debian's
//! `docker-compose`; `scripts/test` installs both. Without one the test
//! says so and passes, unless `CI=true`: then it fails.

use std::path::Path;
use std::process::Command;

use infra::testing::ops_dir;

/// `tool` on the PATH, or `None` after saying why the check is skipped.
fn tool(tool: &str, package: &str) -> Option<String> {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if found {
        return Some(tool.to_owned());
    }
    let in_ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
    assert!(
        !in_ci,
        "{tool} is missing in CI; scripts/test installs it (apt-get install {package})"
    );
    eprintln!("skipped: {tool} is not installed (apt-get install {package})");
    None
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn prometheus_checks_the_configuration_and_the_alert_rules() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    let dir = ops_dir().join("prometheus");
    run(&promtool, &["check", "config", "prometheus.yml"], &dir);
    run(&promtool, &["check", "rules", "alerts.yml"], &dir);
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    run(
        &promtool,
        &["test", "rules", "alerts.test.yml"],
        &ops_dir().join("prometheus"),
    );
}

#[test]
fn docker_compose_reads_the_observability_profile() {
    let Some(compose) = tool("docker-compose", "docker-compose") else {
        return;
    };
    let root = ops_dir().join("..");
    run(
        &compose,
        &["--profile", "observability", "config", "--quiet"],
        &root,
    );
    let output = Command::new(&compose)
        .args(["--profile", "observability", "config", "--services"])
        .current_dir(&root)
        .output()
        .expect("run docker-compose");
    let services = String::from_utf8_lossy(&output.stdout);
    for service in ["prometheus", "grafana", "api", "projector", "worker"] {
        assert!(services.lines().any(|line| line == service), "{services}");
    }
}
