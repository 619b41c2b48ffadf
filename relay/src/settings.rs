use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser};
use infra::settings::CommonSettings;

use crate::seal::SealSettings;

/// Events read and published per batch, by default.
pub const DEFAULT_BATCH_SIZE: i64 = 500;
/// Batches sent and not yet confirmed, at most, by default.
pub const DEFAULT_WINDOW_BATCHES: usize = 8;

/// How the relay publishes and seals the log, in the units the code uses.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub batch_size: i64,
    /// Batches sent and not yet confirmed, at most.
    pub window: usize,
    /// Fallback when a notification is missed; publishing never waits for it.
    pub poll_interval: Duration,
    pub seal: SealSettings,
}

/// The relay's options, shared by the `relay` and `api` binaries.
#[derive(Args, Clone, Debug)]
pub struct RelayArgs {
    /// Events read and published per batch.
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE)]
    pub relay_batch_size: i64,

    /// Batches sent while earlier ones await the broker's confirms, at most;
    /// the checkpoint advances past a batch once it and all before it are
    /// confirmed.
    #[arg(long, env = "RELAY_WINDOW_BATCHES", default_value_t = DEFAULT_WINDOW_BATCHES)]
    pub relay_window_batches: usize,

    /// Fallback poll of the event table when no notification arrives, in milliseconds.
    #[arg(long, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub relay_poll_interval_ms: u64,

    /// Ed25519 private key (PKCS#8 PEM) that signs the log's checkpoints;
    /// not the JWT key. Its public half is listed at GET /v1/audit/keys.
    #[arg(
        long,
        env = "AUDIT_SIGNING_KEY_FILE",
        default_value = ".keys/audit-signing.pem"
    )]
    pub audit_signing_key_file: PathBuf,

    /// Generate the audit signing key (and `<file>.pub`) on first start when
    /// the file is missing. For development; set to false in production.
    #[arg(long, env = "AUDIT_GENERATE_KEY", default_value_t = true, action = clap::ArgAction::Set)]
    pub audit_generate_key: bool,

    /// Sign a checkpoint of the log after this many events...
    #[arg(long, env = "AUDIT_CHECKPOINT_EVERY_EVENTS", default_value_t = 1000)]
    pub audit_checkpoint_every_events: i64,

    /// ...or after this many seconds when any event came since the last one.
    #[arg(long, env = "AUDIT_CHECKPOINT_EVERY_SECONDS", default_value_t = 60)]
    pub audit_checkpoint_every_seconds: u64,
}

impl RelayArgs {
    /// Reads (or, if allowed, generates) the audit signing key.
    pub fn settings(&self) -> anyhow::Result<RelaySettings> {
        let key = infra::key_file::load_signing_key(
            &self.audit_signing_key_file,
            self.audit_generate_key,
            "audit signing key",
        )?;
        Ok(RelaySettings {
            batch_size: self.relay_batch_size.max(1),
            window: self.relay_window_batches.max(1),
            poll_interval: Duration::from_millis(self.relay_poll_interval_ms.max(10)),
            seal: SealSettings {
                key: Arc::new(key),
                every_events: self.audit_checkpoint_every_events.max(1),
                every: Duration::from_secs(self.audit_checkpoint_every_seconds),
                state_file: infra::integrity::signer_state_file(&self.audit_signing_key_file),
                health: infra::health::SignerHealth::default(),
            },
        })
    }
}

/// Publishes the event log to RabbitMQ on its own, for operators who run
/// the relay apart from the api (start the api with `RELAY_ENABLED=false`).
/// Any number may run: one is elected, the others wait to take over.
#[derive(Parser, Debug)]
#[command(name = "relay", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub settings: StandaloneSettings,
}

#[derive(Args, Clone, Debug)]
pub struct StandaloneSettings {
    #[command(flatten)]
    pub common: CommonSettings,

    #[command(flatten)]
    pub relay: RelayArgs,

    /// Address of the health and metrics endpoints (port 0 picks a free port).
    #[arg(long, env = "RELAY_ADDR", default_value = "127.0.0.1:8083")]
    pub relay_addr: String,
}
