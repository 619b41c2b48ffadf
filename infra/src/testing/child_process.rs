//! A service binary in a child process, killed when dropped.

use std::path::PathBuf;

use crate::settings::CommonSettings;

/// A service's binary as a test crate knows it (`env!("CARGO_BIN_EXE_...")`,
/// `env!("CARGO_TARGET_TMPDIR")`).
pub struct ServiceBinary {
    pub name: &'static str,
    pub path: &'static str,
    /// Where its logs go, one file per test and run.
    pub log_dir: &'static str,
}

impl ServiceBinary {
    /// The binary configured through its environment variables only:
    /// `common`'s and the service's own `env`. `run` distinguishes the log
    /// files of restarts.
    pub fn spawn(
        &self,
        common: &CommonSettings,
        env: Vec<(&'static str, String)>,
        run: usize,
    ) -> ChildProcess {
        let mut all = super::common_env(common);
        all.extend(env);
        let log = PathBuf::from(self.log_dir).join(format!(
            "{}-{}-{run}.log",
            self.name,
            common.amqp_queue_prefix.trim_end_matches('.')
        ));
        ChildProcess::spawn(self.name, self.path, &all, log)
    }
}

/// A binary in a child process with only the given environment (and
/// `RUST_LOG` if set); killed when dropped. Its output goes to `log`, which
/// is shown (and kept) when the test fails.
pub struct ChildProcess {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
}

impl ChildProcess {
    pub fn spawn(
        name: &'static str,
        binary: &str,
        env: &[(&'static str, String)],
        log: PathBuf,
    ) -> Self {
        use std::process::{Command, Stdio};
        let output = std::fs::File::create(&log).expect("create the process log");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(env.iter().map(|(key, value)| (*key, value)))
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file handle"))
            .stderr(output);
        if let Some(filter) = std::env::var_os("RUST_LOG") {
            command.env("RUST_LOG", filter);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {name}: {error}"));
        Self { name, child, log }
    }

    /// SIGKILL: no shutdown hook runs, the transaction in hand is cut off.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill the process");
        self.child.wait().expect("reap the process");
    }

    /// SIGTERM: the process finishes what it holds and must exit cleanly.
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let exit = self.child.wait().expect("wait for the process");
        assert!(exit.success(), "{} exited with {exit}", self.name);
    }

    /// SIGSTOP: the process is frozen where it is, so a test can look at
    /// what it has done so far and then kill it there or let it go on.
    pub fn pause(&mut self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`ChildProcess::pause`].
    pub fn resume(&mut self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether it is still running (a service should not exit by itself).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("process status").is_none()
    }
}

impl Drop for ChildProcess {
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
