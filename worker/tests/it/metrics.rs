//! The worker binary's `/metrics` right after start, before any lockout:
//! every metric it registers is there, described, named with a unit, its
//! counters at zero; the lockout queue's depths follow at their first sample.

use infra::testing::{assert_fresh_metrics, free_port, wait_until_ready};

use crate::support::{run, Fixture};

#[tokio::test]
async fn every_metric_exists_at_zero_with_help_and_a_unit_from_the_start() {
    let port = free_port();
    let fx = Fixture::new(|settings| settings.worker_addr = format!("127.0.0.1:{port}")).await;
    let _worker = run::spawn_binary(&fx.settings, 1);
    wait_until_ready(port).await;

    let group = fx.settings.consumer_group();
    let queue = fx.settings.common.topology().queue_name(&group);
    let names = [worker::metrics::NAMES, &[infra::command_metrics::COMMANDS]].concat();
    assert_fresh_metrics(port, &names, Some(&queue)).await;
}
