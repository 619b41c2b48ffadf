//! Runs the worker: in-process on a runtime of its own (so it works in
//! parallel with the test and stops for good when dropped), or as the real
//! binary in a child process.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;
use worker::settings::WorkerSettings;
use worker::startup::Application;

/// `worker::startup::Application` on its own runtime thread. Dropping it
/// shuts that runtime down, which ends the consumer and the expiry loop and
/// closes the broker connection: unacked deliveries go back to the queue.
pub struct InProcessWorker {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl InProcessWorker {
    pub async fn start(settings: WorkerSettings) -> Self {
        let (started_tx, started_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("worker runtime");
            runtime.block_on(async move {
                let application = match Application::build(settings).await {
                    Ok(application) => application,
                    Err(error) => {
                        let _ = started_tx.send(Err(error));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(application.port()));
                tokio::select! {
                    result = application.run_until_stopped() => result.expect("worker failed"),
                    _ = stop_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(5));
        });
        let port = started_rx
            .await
            .expect("worker thread")
            .expect("build the worker");
        Self {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `worker` binary configured through its environment variables;
/// killed when dropped. Its output goes to a log file, shown (and kept)
/// when the test fails.
pub struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts the binary; `run` distinguishes the log files of restarts.
    pub fn spawn(settings: &WorkerSettings, run: usize) -> Self {
        let common = &settings.common;
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "worker-{}-{run}.log",
            common.amqp_queue_prefix.trim_end_matches('.')
        ));
        let output = File::create(&log).expect("create worker log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
        // Only what the test sets: nothing from the caller's environment.
        command
            .env_clear()
            .env("DATABASE_URL", &common.database_url)
            .env(
                "DATABASE_MAX_CONNECTIONS",
                common.database_max_connections.to_string(),
            )
            .env("AMQP_URL", &common.amqp_url)
            .env("AMQP_EXCHANGE", &common.amqp_exchange)
            .env("AMQP_QUEUE_PREFIX", &common.amqp_queue_prefix)
            .env("MIGRATE_ON_START", common.migrate_on_start.to_string())
            .env("LOG_FORMAT", "json")
            .env("WORKER_ADDR", &settings.worker_addr)
            .env("LOCKOUT_THRESHOLD", settings.lockout_threshold.to_string())
            .env(
                "LOCKOUT_WINDOW_SECONDS",
                settings.lockout_window_seconds.to_string(),
            )
            .env(
                "LOCKOUT_DURATION_SECONDS",
                settings.lockout_duration_seconds.to_string(),
            )
            .env(
                "LOCKOUT_IP_THRESHOLD",
                settings.lockout_ip_threshold.to_string(),
            )
            .env(
                "LOCKOUT_IP_BLOCK_SECONDS",
                settings.lockout_ip_block_seconds.to_string(),
            )
            .env(
                "SESSION_EXPIRY_INTERVAL_MS",
                settings.session_expiry_interval_ms.to_string(),
            )
            .env(
                "SESSION_EXPIRY_BATCH",
                settings.session_expiry_batch.to_string(),
            )
            .env("WORKER_DELIVERY_LIMIT", settings.delivery_limit.to_string())
            .env("WORKER_PREFETCH", settings.prefetch.to_string())
            .env("WORKER_MAX_BATCH", settings.max_batch.to_string())
            .env("WORKER_RETRY_BASE_MS", settings.retry_base_ms.to_string())
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file handle"))
            .stderr(output);
        if let Some(filter) = std::env::var_os("RUST_LOG") {
            command.env("RUST_LOG", filter);
        }
        let child = command.spawn().expect("start the worker binary");
        Self { child, log }
    }

    /// SIGKILL: no shutdown hook runs, the transaction in hand is cut off.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill the worker");
        self.child.wait().expect("reap the worker");
    }

    /// SIGTERM: the worker finishes what it holds and exits.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = self.child.wait().expect("wait for the worker");
        assert!(exit.success(), "worker exited with {exit}");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("worker status").is_none()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            eprintln!("last lines of {}:\n{}", self.log.display(), tail.join("\n"));
        }
    }
}
