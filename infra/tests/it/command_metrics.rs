//! `commands_total{aggregate, command, outcome}` counts each command the
//! `CommandBus` runs by how it ended, against a real database. Recorded on
//! a recorder of this test's own (a thread-local one around a
//! current-thread runtime), so other tests' commands do not count.

use std::collections::BTreeMap;

use cqrs_es::AggregateError;
use domain::{DisplayName, Email, PasswordHash, User, UserCommand};
use infra::command_metrics::{self, CommandOutcome, COMMANDS};
use infra::commands::CommandBus;
use infra::testing::{MetricsPage, TestDatabase};
use metrics_exporter_prometheus::PrometheusBuilder;
use uuid::Uuid;

fn register(user_id: Uuid) -> UserCommand {
    UserCommand::Register {
        user_id,
        email: Email::parse(&format!("{user_id}@example.com")).unwrap(),
        display_name: DisplayName::parse("C").unwrap(),
        password_hash: PasswordHash::new("$argon2id$test".into()),
    }
}

fn rename(name: &str) -> UserCommand {
    UserCommand::ChangeDisplayName {
        display_name: DisplayName::parse(name).unwrap(),
    }
}

/// What the commands returned, counted by outcome and command name.
type Seen = BTreeMap<(&'static str, &'static str), f64>;

fn saw<T, E: std::error::Error>(
    seen: &mut Seen,
    command: &'static str,
    result: &Result<T, AggregateError<E>>,
) {
    *seen
        .entry((command, CommandOutcome::of(result).label()))
        .or_default() += 1.0;
}

async fn run_commands() -> Seen {
    let db = TestDatabase::create().await;
    let users = CommandBus::<User>::new(db.pool.clone());
    let metadata = bus::EventMetadata::default();
    let id = Uuid::new_v4();
    let key = id.to_string();
    let mut seen = Seen::new();
    let first = users.execute(&key, register(id), &metadata).await;
    assert!(first.is_ok());
    saw(&mut seen, "register", &first);
    let again = users.execute(&key, register(id), &metadata).await;
    assert!(matches!(again, Err(AggregateError::UserError(_))));
    saw(&mut seen, "register", &again);
    // Two renames racing on one user until one loses the append.
    for round in 0..20 {
        let (a, b) = tokio::join!(
            users.execute(&key, rename(&format!("A{round}")), &metadata),
            users.execute(&key, rename(&format!("B{round}")), &metadata),
        );
        saw(&mut seen, "change_display_name", &a);
        saw(&mut seen, "change_display_name", &b);
        if seen.contains_key(&("change_display_name", "conflict")) {
            break;
        }
    }
    db.pool.close().await;
    let closed = users.execute(&key, rename("Z"), &metadata).await;
    assert!(
        matches!(closed, Err(ref error) if !matches!(error, AggregateError::UserError(_) | AggregateError::AggregateConflict))
    );
    saw(&mut seen, "change_display_name", &closed);
    seen
}

#[test]
fn every_command_is_counted_by_its_outcome() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let seen = metrics::with_local_recorder(&recorder, || {
        command_metrics::register();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(run_commands())
    });

    let page = MetricsPage::parse(&handle.render());
    page.assert_conventions();
    let counted: Seen = page.families[COMMANDS]
        .samples
        .iter()
        .filter(|sample| sample.labels["aggregate"] == "user" && sample.value > 0.0)
        .map(|sample| {
            let command = domain_name(&sample.labels["command"]);
            let outcome = CommandOutcome::ALL
                .iter()
                .map(|outcome| outcome.label())
                .find(|label| *label == sample.labels["outcome"])
                .expect("a known outcome");
            ((command, outcome), sample.value)
        })
        .collect();
    assert_eq!(counted, seen);
    for outcome in ["ok", "rejected", "conflict", "error"] {
        assert!(
            seen.keys()
                .any(|(_, seen_outcome)| *seen_outcome == outcome),
            "no {outcome} command in {seen:?}"
        );
    }
    let labels = page.label_values(COMMANDS, "command");
    assert!(
        labels.contains("deactivate") && labels.contains("delete"),
        "{labels:?}"
    );
}

fn domain_name(label: &str) -> &'static str {
    use domain::CommandName;
    UserCommand::NAMES
        .iter()
        .find(|name| **name == label)
        .copied()
        .unwrap_or_else(|| panic!("{label} is no user command"))
}
