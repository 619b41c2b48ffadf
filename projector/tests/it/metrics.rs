//! The projector binary's `/metrics` right after start: every metric it
//! registers is there, described, named with a unit, its counters at zero;
//! the queue depths follow at their first sample.

use infra::testing::{assert_fresh_metrics, free_port, wait_until_ready};

use crate::support::{run, Fixture};

#[tokio::test]
async fn every_metric_exists_at_zero_with_help_and_a_unit_from_the_start() {
    let port = free_port();
    let fx = Fixture::new(|settings| settings.projector_addr = format!("127.0.0.1:{port}")).await;
    let _projector = run::spawn_binary(&fx.settings, 1);
    wait_until_ready(port).await;

    let group = fx.settings.consumer_group();
    let queue = fx.settings.common.topology().queue_name(&group);
    assert_fresh_metrics(port, projector::metrics::NAMES, Some(&queue)).await;
}
