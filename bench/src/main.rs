//! `bench`: registers users against the real `api` and `projector` processes,
//! each run on a database and broker names of its own, and measures where
//! the time of a registration goes: the HTTP command, the outbox relay to
//! RabbitMQ, and the projection into `users_view`; then logs every user in
//! and measures the login latency and rate against the argon2id hash rate.

mod argon;
mod checkpoints;
mod cpu;
mod export;
mod failed_logins;
mod figures;
mod hot_paths;
mod load;
mod login;
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

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use secrecy::SecretString;

/// Benchmarks user registration end to end, and login, against the real `api` and `projector`.
///
/// Creates a fresh database (identity_bench_<uuid>) and unique exchange and queue
/// names, starts both binaries on free ports (logs and the API's JWT signing key
/// under target/bench-logs/<run>/), registers the users with concurrent clients
/// and reports, per registration: (a) the POST latency, (b) 201 -> the event seen
/// on a tap queue of its own, and (c) 201 -> the event applied to users_view
/// (projection_checkpoints polled every 2 ms). Then every user logs in
/// (POST /v1/auth/login, --logins-per-user times, the same concurrent clients):
/// login latency, logins/s, refusals (429, 503) and the API's CPU during that
/// phase. Then --failed-logins refused logins of each kind, alternating: a wrong
/// password for a registered user and an unknown email, each of which must be
/// the same 401 invalid-credentials problem, byte for byte; their latencies and
/// the difference of their medians show whether either answers measurably later
/// (the bench runs no worker, so the wrong passwords lock nobody). Each
/// registration and each login costs one argon2id hash, so the bench
/// also measures argon2id hashes/s on this machine (1 thread, all cores), the
/// bound of both rates. Finally every user reads themself back with
/// ?min_position, authenticated by their own access token. Last, the audit
/// export: --export-events events (users registered and renamed 99 times) are
/// seeded in one transaction before the services start, with the relay's and
/// the projection's checkpoints moved past them (never published, counted as
/// projected: the export reads the event store itself); an auditor is
/// made with `api admin bootstrap` and logged in until its token carries
/// audit:read; GET /v1/audit/export is downloaded as it streams (bytes, lines,
/// the end line checked against the event store) while the API's VmRSS is
/// sampled every 10 ms: events/s, MB/s, RSS baseline, peak and growth. The
/// machine's limit, same run: PostgreSQL alone streaming the same rows to a
/// client (one query, sqlx fetch), and the export's rate as a share of it;
/// then `api audit export --output <run>/export.ndjson` once (events/s, file
/// size). Then, on the same store, the verify phase: once audit_chain_head
/// and a signed checkpoint cover every event (the relay folds the seed when
/// elected), `api audit verify --public-key <run>/audit-signing.pem.pub` is
/// run once: wall time, events/s, peak RSS (ru_maxrss from wait4, and VmRSS
/// every 10 ms); its report must be ok with every event and checkpoint of
/// the store checked. The machine's limit, same run: SHA-256 (the sha2
/// crate, one thread, in memory) over the bytes verification hashes at
/// least (the sealed text, 100 bytes of other fields per event, and the
/// payload and metadata text for the commitments), and the verify's rate as
/// a share of it. Stops the processes and removes the database, queues,
/// exchanges, signing keys and export file afterwards, also after a
/// failure, a timeout or Ctrl-C.
///
/// Service settings such as API_WORKERS, DATABASE_MAX_CONNECTIONS,
/// PASSWORD_HASH_QUEUE, RELAY_* and PROJECTOR_* are passed through from the
/// environment (and printed); the database, broker names, addresses and
/// LOG_FORMAT are set by the bench, and for the api also SIGNUP_MODE=open,
/// JWT_SIGNING_KEY_FILE and AUDIT_SIGNING_KEY_FILE (generated in the run's
/// directory), AUDIT_CHECKPOINT_EVERY_SECONDS=1 (the verify phase waits for a
/// checkpoint over the whole log) and AUTH_RATE_PER_SECOND = AUTH_RATE_BURST =
/// LOCKOUT_IP_THRESHOLD = 1000000 (the bench measures password hashing, not the
/// per-IP login rate limit, and its failed logins must not block the address).
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
