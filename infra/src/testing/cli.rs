//! A service binary's subcommand run to its end, as an operator would.

use std::process::{Command, Output, Stdio};

use crate::settings::CommonSettings;

/// Runs `binary args...` with `common`'s environment and `env` only;
/// returns its output (standard output and error) and exit status.
pub async fn run_cli(
    binary: &'static str,
    common: &CommonSettings,
    env: &[(&'static str, String)],
    args: &[&str],
) -> Output {
    let mut env_all = super::common_env(common);
    env_all.extend(env.iter().cloned());
    let env = env_all;
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .env_clear()
            .envs(env)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the binary")
    })
    .await
    .expect("the command task")
}

/// Standard output of a run that must have succeeded.
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}
