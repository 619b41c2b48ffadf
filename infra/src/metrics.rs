//! The process's Prometheus recorder, served at `/metrics`. Installed once
//! per process (tests run several applications in one process).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Seconds, from a millisecond to a minute: request latency and lags.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("buckets are not empty");
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder was installed first: serve an empty page
                // rather than fail the process.
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}
