//! The `api` and `projector` child processes: started with the bench's
//! settings, their port read from their JSON log, stopped with SIGTERM (then
//! SIGKILL).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a process gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// How often a one-off command (`api admin bootstrap`, `api audit export`) is
/// checked for its exit: the granularity of its measured wall time.
pub const EXIT_POLL: Duration = Duration::from_millis(2);

/// Service settings the bench passes through from its own environment.
pub const PASSED_THROUGH: &[&str] = &[
    "RUST_LOG",
    "API_WORKERS",
    "DATABASE_MAX_CONNECTIONS",
    "READ_YOUR_WRITES_TIMEOUT_MS",
    "PASSWORD_HASH_QUEUE",
    "RELAY_ENABLED",
    "RELAY_BATCH_SIZE",
    "RELAY_WINDOW_BATCHES",
    "RELAY_POLL_INTERVAL_MS",
    "PROJECTOR_DELIVERY_LIMIT",
    "PROJECTOR_PREFETCH",
    "PROJECTOR_MAX_BATCH",
    "PROJECTOR_RETRY_BASE_MS",
    "AUDIT_CHECKPOINT_EVERY_EVENTS",
];

/// `path`, taken from the workspace root when relative; an error saying how to
/// build it when it is not there.
pub fn resolve_binary(root: &Path, path: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let resolved = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    };
    anyhow::ensure!(
        resolved.is_file(),
        "the {name} binary is missing at {}; build it first with \
         `cargo build --release --bin api --bin projector --bin worker` (in {}), or pass --{name}-bin",
        resolved.display(),
        root.display(),
    );
    Ok(resolved)
}

/// A running child process; killed if dropped while still running.
pub struct Service {
    pub name: &'static str,
    pub log: PathBuf,
    pub port: Option<u16>,
    child: Child,
}

impl Service {
    /// Starts `bin` with `args` and `env` on top of the bench's environment;
    /// stdout and stderr go to `log`.
    pub fn start(
        name: &'static str,
        bin: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&str, String)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let stdout = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let stderr = stdout.try_clone()?;
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // A group of its own: Ctrl-C in the terminal reaches only the bench,
            // which then stops the services in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Self {
            name,
            log,
            port: None,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Err (with the end of the log) when the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(anyhow::anyhow!(
                "{} exited early ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 15)
            )),
        }
    }

    /// The exit status once the process has exited.
    pub fn try_exit(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits (polling every [`EXIT_POLL`]) for a one-off command to exit.
    pub async fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// Waits for the JSON log line `message` and takes its `port` field
    /// (the services bind port 0 and log the port they got).
    pub async fn wait_for_port(&mut self, message: &str) -> anyhow::Result<u16> {
        loop {
            self.check_running()?;
            if let Some(port) = logged_port(&self.log, message) {
                self.port = Some(port);
                return Ok(port);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let port = self.port.context("port not known yet")?;
        let url = format!("http://127.0.0.1:{port}/health/ready");
        loop {
            self.check_running()?;
            let response = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(&response, Ok(response) if response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL.
    pub async fn stop(&mut self) -> anyhow::Result<Stopped> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(Stopped::AlreadyExited(status));
        }
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) with a pid this process spawned and has not yet reaped.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(std::io::Error::last_os_error()).context("SIGTERM");
        }
        let started = Instant::now();
        while started.elapsed() < STOP_GRACE {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Stopped::Terminated(status, started.elapsed()));
            }
            tokio::time::sleep(POLL).await;
        }
        self.child.kill()?;
        Ok(Stopped::Killed(self.child.wait()?))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
pub enum Stopped {
    AlreadyExited(ExitStatus),
    Terminated(ExitStatus, Duration),
    Killed(ExitStatus),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyExited(status) => write!(f, "had already exited ({status})"),
            Self::Terminated(status, took) => {
                write!(
                    f,
                    "stopped on SIGTERM in {} ms ({status})",
                    took.as_millis()
                )
            }
            Self::Killed(status) => write!(
                f,
                "killed after ignoring SIGTERM for {} s ({status})",
                STOP_GRACE.as_secs()
            ),
        }
    }
}

fn logged_port(log: &Path, message: &str) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["message"] == message)
        .and_then(|entry| entry["port"].as_u64())
        .and_then(|port| u16::try_from(port).ok())
}

pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
