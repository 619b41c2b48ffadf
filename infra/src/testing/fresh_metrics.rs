//! What every process's `/metrics` must show right after start.

use super::{eventually, scrape, MetricsPage, TIMEOUT};

/// Scrapes the process at `port` at once: every family keeps the
/// conventions, every name in `names` is there, every counter is zero. For a
/// consuming process (`queue`), the consumer's counters carry its queue and
/// its depth gauges follow at the first sample, both at zero. Returns the
/// first page.
pub async fn assert_fresh_metrics(port: u16, names: &[&str], queue: Option<&str>) -> MetricsPage {
    let page = scrape(port).await;
    page.assert_conventions();
    page.assert_present_at_zero(names);
    if let Some(queue) = queue {
        assert_consumer_at_zero(&page, queue);
        assert_depths_sampled_at_zero(port, queue).await;
    }
    page
}

fn assert_consumer_at_zero(page: &MetricsPage, queue: &str) {
    page.assert_present_at_zero(bus::metrics::NAMES);
    for name in bus::metrics::NAMES {
        let queues = page.label_values(name, "queue");
        assert!(queues.contains(queue), "{name} has no series of {queue}");
    }
}

async fn assert_depths_sampled_at_zero(port: u16, queue: &str) {
    let depths = bus::metrics::OBSERVED;
    let page = eventually(TIMEOUT, "the queue depths sampled", || async {
        let page = scrape(port).await;
        depths
            .iter()
            .all(|name| page.label_values(name, "queue").contains(queue))
            .then_some(page)
    })
    .await;
    page.assert_conventions();
    for name in depths {
        let sample = page.families[*name]
            .samples
            .iter()
            .find(|sample| sample.labels["queue"] == queue)
            .expect("a sample of the queue");
        assert_eq!(sample.value, 0.0, "{name} of {queue}");
    }
}
