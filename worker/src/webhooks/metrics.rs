//! The delivery metrics the operations alerts and dashboard use.

use std::time::Duration;

pub const DELIVERIES: &str = "webhook_deliveries_total";
pub const DURATION: &str = "webhook_delivery_duration_seconds";

/// An attempt's outcome: the only values of the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Failed, and scheduled again.
    Failed,
    /// Failed for the last time (or its webhook is gone).
    Dead,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Self::Delivered, Self::Failed, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

/// Describes the metrics and starts each outcome's counter at zero.
pub fn register() {
    metrics::describe_counter!(
        DELIVERIES,
        metrics::Unit::Count,
        "Webhook delivery attempts by outcome: delivered, failed (to be retried) or dead (given up)"
    );
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Time from sending a webhook delivery to the receiver's answer, timeout or error"
    );
    for outcome in Outcome::ALL {
        metrics::counter!(DELIVERIES, "outcome" => outcome.as_str()).increment(0);
    }
    // Registered without a sample, so the page has it (count 0) from the start.
    let _ = metrics::histogram!(DURATION);
}

pub fn record(outcome: Outcome, duration: Duration) {
    metrics::counter!(DELIVERIES, "outcome" => outcome.as_str()).increment(1);
    metrics::histogram!(DURATION).record(duration.as_secs_f64());
}
