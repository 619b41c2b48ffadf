//! Runs the projector: in-process on a runtime of its own, or as the real
//! binary in a child process (both from `infra::testing`).

use infra::testing::{ChildProcess, InProcess, ServiceBinary};
use projector::settings::ProjectorSettings;
use projector::startup::Application;

const BINARY: ServiceBinary = ServiceBinary {
    name: "projector",
    path: env!("CARGO_BIN_EXE_projector"),
    log_dir: env!("CARGO_TARGET_TMPDIR"),
};

pub async fn start_in_process(settings: ProjectorSettings) -> InProcess {
    InProcess::start("projector", move || async move {
        let application = Application::build(settings).await?;
        let port = application.port();
        Ok((port, application.run_until_stopped()))
    })
    .await
}

/// The binary configured through its environment variables only; `run`
/// distinguishes the log files of restarts.
pub fn spawn_binary(settings: &ProjectorSettings, run: usize) -> ChildProcess {
    let env = vec![
        ("PROJECTOR_ADDR", settings.projector_addr.clone()),
        (
            "PROJECTOR_DELIVERY_LIMIT",
            settings.delivery_limit.to_string(),
        ),
        ("PROJECTOR_PREFETCH", settings.prefetch.to_string()),
        ("PROJECTOR_MAX_BATCH", settings.max_batch.to_string()),
        (
            "PROJECTOR_RETRY_BASE_MS",
            settings.retry_base_ms.to_string(),
        ),
    ];
    BINARY.spawn(&settings.common, env, run)
}
