//! When a failed delivery is tried again, and when it is given up. Pure.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// The delay after the first failure, before jitter.
    pub base: Duration,
    pub max: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    RetryIn(Duration),
    Dead,
}

impl RetryPolicy {
    /// After the `failures`-th failed attempt (1 for the first): dead once
    /// `max_attempts` have failed, else exponential backoff, `base ×
    /// 2^(failures-1)` capped at `max`, of which a random half is taken off
    /// (`jitter` in 0..=1) so that receivers recovering from an outage are
    /// not hit by every retry at once.
    pub fn after_failure(&self, failures: u32, jitter: f64) -> AfterFailure {
        if failures >= self.max_attempts {
            return AfterFailure::Dead;
        }
        let doubled = self
            .base
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)));
        let capped = doubled.min(self.max);
        AfterFailure::RetryIn(capped.mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 2.0))
    }
}

/// A random jitter in 0..=1.
pub fn jitter() -> f64 {
    use rand_core::{OsRng, RngCore};
    f64::from(OsRng.next_u32()) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_secs(1),
        max: Duration::from_secs(6),
    };

    #[test]
    fn the_delay_doubles_up_to_the_cap_and_jitter_takes_up_to_half() {
        let cases = [
            (1, 0.0, 1_000),
            (2, 0.0, 2_000),
            (3, 0.0, 4_000),
            (4, 0.0, 6_000),
            (1, 1.0, 500),
            (3, 0.5, 3_000),
            (4, 1.0, 3_000),
        ];
        for (failures, jitter, millis) in cases {
            assert_eq!(
                POLICY.after_failure(failures, jitter),
                AfterFailure::RetryIn(Duration::from_millis(millis)),
                "{failures} failures, jitter {jitter}"
            );
        }
    }

    #[test]
    fn the_last_attempt_makes_it_dead() {
        assert_eq!(POLICY.after_failure(5, 0.3), AfterFailure::Dead);
        assert_eq!(POLICY.after_failure(9, 0.3), AfterFailure::Dead);
        let once = RetryPolicy {
            max_attempts: 1,
            ..POLICY
        };
        assert_eq!(once.after_failure(1, 0.0), AfterFailure::Dead);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let patient = RetryPolicy {
            max_attempts: u32::MAX,
            ..POLICY
        };
        assert_eq!(
            patient.after_failure(200, 0.0),
            AfterFailure::RetryIn(Duration::from_secs(6))
        );
    }

    #[test]
    fn jitter_is_within_bounds() {
        for _ in 0..100 {
            assert!((0.0..=1.0).contains(&jitter()));
        }
    }
}
