//! The relay binary's `/metrics` right after start: every metric it
//! registers is there at zero, described and named with a unit.

use infra::testing::{
    amqp_url, assert_fresh_metrics, free_port, wait_until_ready, ChildProcess, TestDatabase,
    TestTopology,
};
use uuid::Uuid;

#[tokio::test]
async fn every_metric_exists_at_zero_with_help_and_a_unit_from_the_start() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![]);
    let port = free_port();
    let run = Uuid::new_v4();
    let key_dir = std::env::temp_dir().join(format!("relay-metrics-{run}"));
    let env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("AMQP_URL", amqp_url()),
        ("AMQP_EXCHANGE", topology.topology.exchange.clone()),
        ("AMQP_QUEUE_PREFIX", topology.topology.queue_prefix.clone()),
        ("MIGRATE_ON_START", "false".into()),
        ("RELAY_ADDR", format!("127.0.0.1:{port}")),
        (
            "AUDIT_SIGNING_KEY_FILE",
            key_dir.join("audit.pem").display().to_string(),
        ),
    ];
    let log = std::env::temp_dir().join(format!("relay-metrics-{run}.log"));
    let _relay = ChildProcess::spawn("relay", env!("CARGO_BIN_EXE_relay"), &env, log);
    wait_until_ready(port).await;

    assert_fresh_metrics(port, relay::metrics::NAMES, None).await;
}
