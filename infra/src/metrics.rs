//! The process's Prometheus recorder, served at `/metrics`. Installed once
//! per process (tests run several applications in one process).
//!
//! Conventions every process keeps (its tests check them on a live page):
//! every metric is described (HELP text) and registered at start, so its
//! counters exist at zero; its name ends in a unit ([`UNIT_SUFFIXES`]), or
//! for a gauge that counts things in one of [`UNITLESS_GAUGE_SUFFIXES`];
//! label values come from a bounded set (queues, projections, known HTTP
//! methods and route patterns, command names), never from input.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Seconds, from a millisecond to a minute: request latency and lags.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Suffixes naming a unit: a counter's `_total`, seconds, bytes.
pub const UNIT_SUFFIXES: &[&str] = &["_total", "_seconds", "_bytes"];
/// Gauges that count things name what they count: a global position in the
/// event log, messages in a queue, events; a `_state` gauge is 1 or 0.
pub const UNITLESS_GAUGE_SUFFIXES: &[&str] = &["_position", "_messages", "_events", "_state"];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder; metrics registered before this go nowhere, so
/// every process calls it first.
pub fn install() {
    let _ = handle();
}

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
