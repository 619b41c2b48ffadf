//! `bench`: runs the real `api`, `projector` and `worker` processes, each
//! run on a database and broker names of its own, drives every hot path
//! over HTTP with its own keep-alive clients, and prints one table of
//! figures, each beside the limit measured in the same run and the target
//! of issue 11 (also written as JSON).

mod argon;
mod checkpoints;
mod cpu;
mod cpu_breakdown;
mod export;
mod failed_logins;
mod figures;
mod hot_paths;
mod load;
mod login;
mod machine;
mod memory;
mod profile;
mod raw_insert;
mod rebuild;
mod refresh;
mod relay_backlog;
mod report;
mod run;
mod services;
mod stream_length;
mod summary;
mod tap;
mod traffic;
mod verify;
mod verify_latency;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use secrecy::SecretString;

/// Benchmarks every hot path of the service against the real `api`, `projector` and `worker`.
///
/// Creates a fresh database (identity_bench_<uuid>) and unique exchange and queue
/// names, seeds it before the services start (the export's events and two users
/// of 10 and --long-stream events, in transactions of 100,000 events that move the
/// relay's and the projection's checkpoints past them), starts the three binaries
/// on free ports (logs, keys and the JSON under target/bench-logs/<run>/) and waits
/// for the relay to fold the seed into the log's running hash. Then, in order:
/// registrations (POST /v1/users -> 201 -> the tap queue -> users_view), logins
/// beside argon2id hashes/s on all cores (measured by the bench in the same run),
/// failed logins (wrong password and unknown email: the same 401, byte for byte),
/// the read-back; the command cost against stream length (PATCH the display name
/// of the short and the long user as the administrator, alternately, after a
/// warm-up; ratio of the medians); with --clients clients for --phase-secs each:
/// cheap commands (each client renames its own user) beside the newest event's
/// row appended by the same clients to streams of their own in a copy of `events`
/// (same indexes, no trigger), with the CPU per command of every process
/// (PostgreSQL and RabbitMQ included), write -> read (a rename, then
/// GET ?min_position) idle and at half the command rate, refresh-token rotation
/// (one session per client, long chains; CPU per rotation of every process), GET /v1/users/me with the api's CPU per
/// request; the relay over a backlog (the api stopped, --relay-events seeded
/// behind the relay's checkpoint, the api started again: events/s until the
/// checkpoint, advanced after the broker's confirms, covers them); the audit
/// export (MB/s, the api's RSS growth, PostgreSQL's own read rate) and `api audit
/// export`; `api audit verify` beside SHA-256 over the same bytes in memory;
/// `projector rebuild --exit` over the whole store; GET /v1/users/me by 4 clients
/// for --phase-secs idle, then while 4 auditors keep full background verification
/// passes over the whole store running (POST, then GET /v1/audit/verify; the api
/// restarted with AUDIT_VERIFY_INTERVAL_MS=100), until a pass started in that window
/// has completed; the RSS of each process idle and at its peak. Prints the details on stderr and the table on stdout, writes
/// the JSON (--json), and removes the database, queues, exchanges, keys and
/// export file afterwards, also after a failure, a timeout or Ctrl-C.
///
/// Service settings such as API_WORKERS, DATABASE_MAX_CONNECTIONS,
/// PASSWORD_HASH_QUEUE, RELAY_* and PROJECTOR_* are passed through from the
/// environment (and printed); the database, broker names, addresses and
/// LOG_FORMAT are set by the bench, and for the api also SIGNUP_MODE=open,
/// JWT_SIGNING_KEY_FILE and AUDIT_SIGNING_KEY_FILE (generated in the run's
/// directory), AUDIT_CHECKPOINT_EVERY_SECONDS=1 (the verify phase waits for a
/// checkpoint over the whole log) and AUTH_RATE_PER_SECOND = AUTH_RATE_BURST =
/// COMMAND_RATE_PER_SECOND = COMMAND_RATE_BURST = LOCKOUT_IP_THRESHOLD =
/// 1000000, and for the worker LOCKOUT_THRESHOLD = 1000000 (the bench
/// measures password hashing and commands, not the limiters, and its failed
/// logins must lock no one whose session a later phase uses).
#[derive(Parser, Debug, Clone)]
#[command(name = "bench", version, about, long_about)]
pub struct Cli {
    /// Users to register.
    #[arg(long, env = "BENCH_USERS", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub users: u32,

    /// Concurrent HTTP clients, each with one request in flight (registrations, then logins).
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Logins per registered user in the login phase (POST /v1/auth/login, each
    /// verifying one argon2id hash), sent by the same --concurrency clients.
    #[arg(long, env = "BENCH_LOGINS_PER_USER", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub logins_per_user: u32,

    /// Refused logins of each kind in the failed-login phase after the login
    /// phase: this many with a wrong password for registered users and this
    /// many with unknown emails, alternating, sent by the same --concurrency
    /// clients; each must be the same 401 invalid-credentials. 0 skips the phase.
    #[arg(long, env = "BENCH_FAILED_LOGINS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub failed_logins: u32,

    /// Events seeded for the audit-export phase (in whole users of 100
    /// events: a registration and 99 renames), written in transactions of
    /// 100,000 before the services start. 0 skips the phase and the verify phase.
    #[arg(long, env = "BENCH_EXPORT_EVENTS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub export_events: u32,

    /// The `api` binary; a relative path is taken from the workspace root.
    #[arg(long, env = "BENCH_API_BIN", default_value = "target/release/api")]
    pub api_bin: PathBuf,

    /// The `projector` binary; a relative path is taken from the workspace root.
    #[arg(
        long,
        env = "BENCH_PROJECTOR_BIN",
        default_value = "target/release/projector"
    )]
    pub projector_bin: PathBuf,

    /// PostgreSQL server; the bench creates and drops a database of its own on it.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432",
        hide_env_values = true,
        value_parser = infra::settings::secret
    )]
    pub postgres_url: SecretString,

    /// RabbitMQ; the bench uses (and deletes) exchange and queue names of its own.
    #[arg(
        long,
        env = "BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        value_parser = infra::settings::secret
    )]
    pub amqp_url: SecretString,

    /// Give up after this many seconds from the database's creation to the last
    /// check (the seed, startup, registrations, waiting for the relay and the
    /// projection, logins, the read-back, the export phase).
    #[arg(long, env = "BENCH_TIMEOUT_SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,

    /// Length of each argon2id measurement (one thread, then nproc threads), in seconds.
    #[arg(long, env = "BENCH_HASH_SECS", default_value_t = 2.0)]
    pub hash_secs: f64,

    /// Also write every registration's timings (ms from the first send) to this CSV file.
    #[arg(long, env = "BENCH_CSV")]
    pub csv: Option<PathBuf>,

    /// Small sizes for every figure (under a minute with release builds):
    /// each size not given on the command line or in the environment takes
    /// its quick value (shown in brackets in this help).
    #[arg(long, env = "BENCH_QUICK")]
    pub quick: bool,

    /// Write the table as JSON to this file (default: <run's log dir>/bench.json).
    #[arg(long, env = "BENCH_JSON")]
    pub json: Option<PathBuf>,

    /// The `worker` binary; a relative path is taken from the workspace root.
    #[arg(
        long,
        env = "BENCH_WORKER_BIN",
        default_value = "target/release/worker"
    )]
    pub worker_bin: PathBuf,

    /// Clients of the hot-path phases (commands, raw inserts, write -> read,
    /// refresh, /users/me), each with one keep-alive connection and one
    /// request in flight; each acts as one of the first registered users. [quick: 4]
    #[arg(long, env = "BENCH_CLIENTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub clients: u32,

    /// Length of each hot-path phase, in seconds. [quick: 2]
    #[arg(long, env = "BENCH_PHASE_SECS", default_value_t = 10.0)]
    pub phase_secs: f64,

    /// Events of the long stream of the command-cost phase (the short one has 10). [quick: 1000]
    #[arg(long, env = "BENCH_LONG_STREAM", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(20..=1_000_000))]
    pub long_stream: u32,

    /// Timed renames of each stream in the command-cost phase. [quick: 30]
    #[arg(long, env = "BENCH_STREAM_SAMPLES", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub stream_samples: u32,

    /// Events of the relay's backlog, seeded while the api is stopped. [quick: 5000]
    #[arg(long, env = "BENCH_RELAY_EVENTS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(100..=10_000_000))]
    pub relay_events: u32,

    /// Longest run of `projector rebuild`: stopped then, its rate is what it
    /// had replayed (the rows of audit_log_next). [quick: 15]
    #[arg(long, env = "BENCH_REBUILD_SECS", default_value_t = 180,
          value_parser = clap::value_parser!(u64).range(1..=7200))]
    pub rebuild_secs: u64,
}

impl Cli {
    /// The sizes of `--quick`, for each one left at its default.
    fn apply_quick(&mut self, matches: &ArgMatches) {
        if !self.quick {
            return;
        }
        let default = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
        let set = |id: &str, apply: &mut dyn FnMut()| {
            if default(id) {
                apply();
            }
        };
        set("users", &mut || self.users = 20);
        set("failed_logins", &mut || self.failed_logins = 10);
        set("export_events", &mut || self.export_events = 5_000);
        set("timeout_secs", &mut || self.timeout_secs = 300);
        set("hash_secs", &mut || self.hash_secs = 0.5);
        set("clients", &mut || self.clients = 4);
        set("phase_secs", &mut || self.phase_secs = 2.0);
        set("long_stream", &mut || self.long_stream = 1_000);
        set("stream_samples", &mut || self.stream_samples = 30);
        set("relay_events", &mut || self.relay_events = 5_000);
        set("rebuild_secs", &mut || self.rebuild_secs = 15);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    cli.apply_quick(&matches);
    match bench(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    anyhow::ensure!(
        cli.hash_secs.is_finite() && (0.1..=60.0).contains(&cli.hash_secs),
        "--hash-secs must be between 0.1 and 60"
    );
    anyhow::ensure!(
        cli.phase_secs.is_finite() && (0.5..=600.0).contains(&cli.phase_secs),
        "--phase-secs must be between 0.5 and 600"
    );
    anyhow::ensure!(
        cli.users >= cli.clients,
        "--users ({}) must be at least --clients ({}): each client acts as a registered user",
        cli.users,
        cli.clients
    );
    let root = workspace_root();
    let api_bin = services::resolve_binary(&root, &cli.api_bin, "api")?;
    let projector_bin = services::resolve_binary(&root, &cli.projector_bin, "projector")?;
    let worker_bin = services::resolve_binary(&root, &cli.worker_bin, "worker")?;
    let machine = report::Machine::detect();

    eprintln!(
        "bench: measuring argon2id hashing ({}s on 1 thread, then {}s on {} threads)",
        cli.hash_secs, cli.hash_secs, machine.nproc
    );
    let hashing = argon::measure(Duration::from_secs_f64(cli.hash_secs), machine.nproc).await?;

    let mut run = run::Run::new(&cli, &root, [api_bin, projector_bin, worker_bin]);
    eprintln!(
        "bench: run {} (database {}, exchange {}, logs {})",
        run.id,
        run.db_name,
        run.topology.exchange,
        run.log_dir.display()
    );
    let limit = Duration::from_secs(cli.timeout_secs);
    let phase = run.phase.clone();
    let log_dir = run.log_dir.clone();
    let outcome = tokio::select! {
        measured = tokio::time::timeout(limit, run.measure(&cli)) => match measured {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "timed out after {}s while {} (see --timeout-secs and the logs in {})",
                cli.timeout_secs,
                phase.get(),
                log_dir.display(),
            )),
        },
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted while {}", phase.get())),
    };
    eprintln!("bench: cleaning up");
    let cleanup = run.cleanup().await;
    let measured = outcome?;
    report::print(&cli, &run, &machine, &hashing, &measured, &cleanup);
    if let Some(path) = &cli.csv {
        report::write_csv(path, &measured)?;
        eprintln!("bench: wrote {}", path.display());
    }
    let table = summary::table(&cli, &run, &machine, &hashing, &measured);
    table.print();
    let json = cli
        .json
        .clone()
        .unwrap_or_else(|| run.log_dir.join("bench.json"));
    table.write_json(&json)?;
    eprintln!("bench: wrote {}", json.display());
    anyhow::ensure!(
        cleanup.problems.is_empty(),
        "cleanup incomplete: {}",
        cleanup.problems.join("; ")
    );
    Ok(())
}

/// The workspace root (the parent of this crate), where the default binary
/// paths and target/bench-logs/ are.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
