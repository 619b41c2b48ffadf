//! Process plumbing shared by the `api` and `projector` binaries: settings
//! common to both, telemetry, the database pool and migrations, reads of the
//! event log, the broker link and the health endpoints.

pub mod broker;
pub mod checkpoints;
pub mod command_metrics;
pub mod commands;
pub mod consuming;
pub mod db;
pub mod dead_letters;
pub mod email_keys;
pub mod erased;
pub mod event_log;
pub mod event_stream;
pub mod health;
pub mod integrity;
pub mod key_file;
pub mod metrics;
pub mod outage;
pub mod process;
pub mod queue_depth;
pub mod refresh_history;
pub mod sessions;
pub mod settings;
pub mod shutdown;
pub mod snapshots;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;
