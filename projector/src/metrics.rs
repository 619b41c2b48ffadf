//! The projector's metrics, labelled by projection (one today:
//! `read_models`). Registered at start, so they exist before the first
//! event.

use infra::checkpoints::READ_MODELS;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Events applied to the read models.
pub const EVENTS_APPLIED: &str = "projector_events_applied_total";
/// The checkpoint queries wait on.
pub const CHECKPOINT_POSITION: &str = "projection_checkpoint_position";
/// Commit to visible in the read model, per event.
pub const LAG: &str = "projection_lag_seconds";

/// The metrics registered at start (the checkpoint as read at start).
pub const NAMES: &[&str] = &[EVENTS_APPLIED, CHECKPOINT_POSITION, LAG];

/// Describes the projector's metrics and starts them at zero.
pub fn register() {
    describe_counter!(
        EVENTS_APPLIED,
        Unit::Count,
        "Events applied to the read models (duplicates included)."
    );
    describe_gauge!(
        CHECKPOINT_POSITION,
        Unit::Count,
        "Global position the projection has applied every event up to; queries wait on it (unitless)."
    );
    describe_histogram!(
        LAG,
        Unit::Seconds,
        "Time from an event's commit to its being visible in the read model."
    );
    metrics::counter!(EVENTS_APPLIED).increment(0);
    let _registered = metrics::histogram!(LAG, "projection" => READ_MODELS);
}

/// Throughput, the checkpoint, and each event's lag.
pub fn record_batch(applied: usize, checkpoint: i64, lags: impl Iterator<Item = f64>) {
    metrics::counter!(EVENTS_APPLIED).increment(applied as u64);
    record_checkpoint(checkpoint);
    let histogram = metrics::histogram!(LAG, "projection" => READ_MODELS);
    for lag in lags {
        histogram.record(lag);
    }
}

/// Where the projection's checkpoint stands.
pub fn record_checkpoint(position: i64) {
    metrics::gauge!(CHECKPOINT_POSITION, "projection" => READ_MODELS).set(position as f64);
}
