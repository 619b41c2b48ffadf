//! Test support for the crates' integration tests (feature `testing`): a
//! fresh database built from the migrations and a broker topology with
//! unique names, both removed when dropped, even after a failed assertion;
//! a publisher standing in for the relay; the services run in-process or as
//! their binaries.

mod broker;
mod child_process;
mod cli;
mod database;
mod dead_letters;
mod fresh_metrics;
mod http;
mod in_process;
mod metadata;
mod metrics_page;
mod promql;
mod relay;
mod seed;
mod settings;
mod tap;
mod tcp_proxy;
mod topology;
mod wait;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

pub use broker::TestBroker;
pub use child_process::{ChildProcess, ServiceBinary};
pub use cli::{run_cli, succeeded};
pub use database::{lock_waiters, TestDatabase, POSTGRES_URL};
pub use dead_letters::{death_reason, handler_error};
pub use fresh_metrics::assert_fresh_metrics;
pub use http::{free_port, http_request, scrape, wait_until_ready, HttpAnswer};
pub use in_process::InProcess;
pub use metadata::request_metadata;
pub use metrics_page::{Family, MetricsPage, Sample};
pub use promql::{alert_expressions, dashboard_expressions, metric_names, ops_dir};
pub use relay::{committed_events, Relay};
pub use seed::seed_renamed_users;
pub use settings::{common_env, common_settings};
pub use tap::{take_exactly, take_within, tap_group};
pub use tcp_proxy::TcpProxy;
pub use topology::{amqp_url, TestTopology, AMQP_URL};
pub use wait::{eventually, TIMEOUT};

/// Logs of in-process services go to the test output when `TEST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        crate::telemetry::init(crate::settings::LogFormat::Pretty);
    }
}

/// The current time to the microsecond: PostgreSQL keeps microseconds, so
/// what is read back can equal it exactly.
pub fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("truncate timestamp")
}

/// Runs cleanup from `Drop`, which cannot await, on a runtime of its own.
fn block_on_own_runtime(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(cleanup))
    })
    .join();
}
