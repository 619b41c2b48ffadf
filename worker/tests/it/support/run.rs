//! Runs the worker: in-process on a runtime of its own, or as the real
//! binary in a child process (both from `infra::testing`).

use infra::testing::{ChildProcess, InProcess, ServiceBinary};
use worker::settings::WorkerSettings;
use worker::startup::Application;
use worker::webhooks::WebhookSettings;

const BINARY: ServiceBinary = ServiceBinary {
    name: "worker",
    path: env!("CARGO_BIN_EXE_worker"),
    log_dir: env!("CARGO_TARGET_TMPDIR"),
};

pub async fn start_in_process(settings: WorkerSettings) -> InProcess {
    InProcess::start("worker", move || async move {
        let application = Application::build(settings).await?;
        let port = application.port();
        Ok((port, application.run_until_stopped()))
    })
    .await
}

/// The binary configured through its environment variables only; `run`
/// distinguishes the log files of restarts.
pub fn spawn_binary(settings: &WorkerSettings, run: usize) -> ChildProcess {
    let env = vec![
        ("WORKER_ADDR", settings.worker_addr.clone()),
        ("LOCKOUT_THRESHOLD", settings.lockout_threshold.to_string()),
        (
            "LOCKOUT_WINDOW_SECONDS",
            settings.lockout_window_seconds.to_string(),
        ),
        (
            "LOCKOUT_DURATION_SECONDS",
            settings.lockout_duration_seconds.to_string(),
        ),
        (
            "SESSION_EXPIRY_INTERVAL_MS",
            settings.session_expiry_interval_ms.to_string(),
        ),
        (
            "SESSION_EXPIRY_BATCH",
            settings.session_expiry_batch.to_string(),
        ),
        ("WORKER_DELIVERY_LIMIT", settings.delivery_limit.to_string()),
        ("WORKER_PREFETCH", settings.prefetch.to_string()),
        ("WORKER_MAX_BATCH", settings.max_batch.to_string()),
        ("WORKER_RETRY_BASE_MS", settings.retry_base_ms.to_string()),
    ];
    let env = env
        .into_iter()
        .chain(webhook_env(&settings.webhooks))
        .collect();
    BINARY.spawn(&settings.common, env, run)
}

fn webhook_env(webhooks: &WebhookSettings) -> Vec<(&'static str, String)> {
    let destinations = &webhooks.destinations;
    vec![
        (
            "WEBHOOKS_ALLOW_HTTP",
            destinations.webhooks_allow_http.to_string(),
        ),
        (
            "WEBHOOKS_ALLOW_PRIVATE_NETWORKS",
            destinations.webhooks_allow_private_networks.to_string(),
        ),
        (
            "WEBHOOK_TIMEOUT_MS",
            webhooks.webhook_timeout_ms.to_string(),
        ),
        (
            "WEBHOOK_MAX_ATTEMPTS",
            webhooks.webhook_max_attempts.to_string(),
        ),
        (
            "WEBHOOK_RETRY_BASE_MS",
            webhooks.webhook_retry_base_ms.to_string(),
        ),
        (
            "WEBHOOK_MAX_IN_FLIGHT",
            webhooks.webhook_max_in_flight.to_string(),
        ),
        (
            "WEBHOOK_POLL_INTERVAL_MS",
            webhooks.webhook_poll_interval_ms.to_string(),
        ),
        (
            "WEBHOOK_DELIVERY_RETENTION_DAYS",
            webhooks.webhook_delivery_retention_days.to_string(),
        ),
    ]
}
