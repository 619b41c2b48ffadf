//! The relay's metrics. Registered at start (by the `relay` binary and by
//! an `api` that runs the relay), so they exist before the first batch.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Events published and confirmed by the broker.
pub const EVENTS_PUBLISHED: &str = "relay_events_published_total";
/// One publish-confirm-checkpoint round.
pub const BATCH_DURATION: &str = "relay_batch_seconds";
/// The global position the relay has published up to.
pub const CHECKPOINT_POSITION: &str = "relay_checkpoint_position";
/// Commit to publish of the newest event of the last batch; 0 when idle.
pub const LAG: &str = "relay_lag_seconds";
/// Events folded into the log's running hash.
pub const CHAIN_EVENTS: &str = "audit_chain_events";
/// Signed checkpoints written.
pub const CHECKPOINTS_WRITTEN: &str = "audit_checkpoints_written_total";

/// 1 while the checkpoint signer refuses to sign (the log does not check,
/// or does not extend what it last signed), else 0.
pub const SIGNER_REFUSING: &str = "audit_signer_refusing_state";

/// The metrics registered at start (at zero).
pub const NAMES: &[&str] = &[
    EVENTS_PUBLISHED,
    BATCH_DURATION,
    CHECKPOINTS_WRITTEN,
    SIGNER_REFUSING,
];
/// The gauges that appear with their first value: once elected (the
/// checkpoint), after the first look for events (the lag), after the first
/// fold (the chain).
pub const OBSERVED: &[&str] = &[CHECKPOINT_POSITION, LAG, CHAIN_EVENTS];

/// Describes the relay's metrics and starts its counters at zero.
pub fn register() {
    describe_counter!(
        EVENTS_PUBLISHED,
        Unit::Count,
        "Events published to the broker and confirmed."
    );
    describe_histogram!(
        BATCH_DURATION,
        Unit::Seconds,
        "Duration of one publish, confirm and checkpoint round."
    );
    describe_gauge!(
        CHECKPOINT_POSITION,
        Unit::Count,
        "Global position of the last event the relay published (unitless)."
    );
    describe_gauge!(
        LAG,
        Unit::Seconds,
        "Commit to publish of the newest event of the last batch; 0 when nothing waits."
    );
    describe_gauge!(
        CHAIN_EVENTS,
        Unit::Count,
        "Events folded into the audit log's running hash (unitless)."
    );
    describe_counter!(
        CHECKPOINTS_WRITTEN,
        Unit::Count,
        "Signed audit checkpoints written."
    );
    describe_gauge!(
        SIGNER_REFUSING,
        Unit::Count,
        "1 while the audit checkpoint signer refuses to sign because the log does not check or \
         does not extend the checkpoint it last signed; 0 while it signs."
    );
    metrics::gauge!(SIGNER_REFUSING).set(0.0);
    metrics::counter!(EVENTS_PUBLISHED).increment(0);
    metrics::counter!(CHECKPOINTS_WRITTEN).increment(0);
    let _registered = metrics::histogram!(BATCH_DURATION);
}
