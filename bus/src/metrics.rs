//! The consumer loop's metrics, labelled by queue (the consumer groups a
//! process consumes: a bounded set). Registered by each consuming process at
//! start, so every series exists at zero before anything happens.

use metrics::{describe_counter, describe_gauge, Unit};

/// Failed events requeued with backoff.
pub const RETRIES: &str = "consumer_retries_total";
/// Messages the consumer dead-lettered at once (undecodable or a permanent
/// handler error).
pub const REJECTED: &str = "consumer_rejected_total";
/// Messages ready in the group's queue (its backlog), sampled.
pub const QUEUE_DEPTH: &str = "consumer_queue_messages";
/// Messages in the group's dead-letter queue, sampled.
pub const DEAD_LETTER_DEPTH: &str = "consumer_dead_letter_messages";

/// The metrics registered at start (at zero).
pub const NAMES: &[&str] = &[RETRIES, REJECTED];
/// The metrics that appear with their first sample.
pub const OBSERVED: &[&str] = &[QUEUE_DEPTH, DEAD_LETTER_DEPTH];

/// Describes the consumer metrics and starts `queue`'s counters at zero.
pub fn register(queue: &str) {
    describe_counter!(RETRIES, Unit::Count, "Failed events requeued with backoff.");
    describe_counter!(
        REJECTED,
        Unit::Count,
        "Messages sent straight to the dead-letter queue: undecodable, or a permanent handler error."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Messages ready in the consumer group's queue (backlog), sampled every few seconds."
    );
    describe_gauge!(
        DEAD_LETTER_DEPTH,
        Unit::Count,
        "Messages waiting in the consumer group's dead-letter queue, sampled every few seconds."
    );
    for name in [RETRIES, REJECTED] {
        metrics::counter!(name, "queue" => queue.to_owned()).increment(0);
    }
}

pub(crate) fn retried(queue: &str) {
    metrics::counter!(RETRIES, "queue" => queue.to_owned()).increment(1);
}

pub(crate) fn rejected(queue: &str) {
    metrics::counter!(REJECTED, "queue" => queue.to_owned()).increment(1);
}

/// Records the sampled depths of `queue` and of its dead-letter queue.
pub fn record_depths(queue: &str, ready: u32, dead: u32) {
    metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_owned()).set(f64::from(ready));
    metrics::gauge!(DEAD_LETTER_DEPTH, "queue" => queue.to_owned()).set(f64::from(dead));
}
