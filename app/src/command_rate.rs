//! How many commands each signed-in user may send, whatever the route, and
//! across every api process: a token bucket per user, kept in PostgreSQL
//! as one timestamp (GCRA, `command_rate_limits`) and taken from in one
//! statement before the command runs. DESIGN.md, "Commands limited per
//! user", argues the choice.

use std::num::NonZeroU32;

use chrono::TimeDelta;
use sqlx::PgPool;
use uuid::Uuid;

use crate::AppError;

/// Commands per second, a decimal: `0.5` is one command every two seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CommandRate(f64);

#[derive(Debug, thiserror::Error)]
pub enum CommandRateError {
    #[error("is not a number")]
    NotANumber(#[from] std::num::ParseFloatError),
    #[error(
        "must be at least {} and at most {}",
        CommandRate::MIN,
        CommandRate::MAX
    )]
    OutOfRange,
}

impl CommandRate {
    /// One command every 1000 s.
    pub const MIN: f64 = 0.001;
    /// One command a microsecond, the precision of a PostgreSQL timestamp.
    pub const MAX: f64 = 1_000_000.0;

    pub fn parse(raw: &str) -> Result<Self, CommandRateError> {
        let rate: f64 = raw.trim().parse()?;
        // NaN is in no range; infinity is above the maximum.
        if (Self::MIN..=Self::MAX).contains(&rate) {
            Ok(Self(rate))
        } else {
            Err(CommandRateError::OutOfRange)
        }
    }

    fn interval(self) -> TimeDelta {
        TimeDelta::microseconds((1e6 / self.0).round() as i64)
    }
}

/// `burst` commands at once, then one every interval of the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandQuota {
    /// The time one command takes back from the bucket.
    interval: TimeDelta,
    /// The bucket: `burst` intervals.
    capacity: TimeDelta,
}

impl CommandQuota {
    pub fn new(rate: CommandRate, burst: NonZeroU32) -> Self {
        let interval = rate.interval();
        Self {
            interval,
            capacity: interval * i32::try_from(burst.get()).unwrap_or(i32::MAX),
        }
    }
}

#[derive(Clone)]
pub struct CommandRateLimit {
    pool: PgPool,
    quota: CommandQuota,
}

impl CommandRateLimit {
    pub fn new(pool: PgPool, quota: CommandQuota) -> Self {
        Self { pool, quota }
    }

    /// Takes one command from the user's bucket, or refuses with `429` and
    /// the seconds until the bucket holds one again.
    pub async fn admit(&self, user_id: Uuid) -> Result<(), AppError> {
        // A refused command moves nothing; the select then sees the row as
        // it was before the statement, which is what the wait is counted from.
        let (admitted, wait_seconds): (bool, Option<f64>) = sqlx::query_as(
            "WITH admitted AS ( \
                 INSERT INTO command_rate_limits AS bucket (user_id, bucket_full) \
                 VALUES ($1, now() + $2) \
                 ON CONFLICT (user_id) DO UPDATE \
                     SET bucket_full = GREATEST(bucket.bucket_full, now()) + $2 \
                     WHERE GREATEST(bucket.bucket_full, now()) + $2 <= now() + $3 \
                 RETURNING 1) \
             SELECT EXISTS (SELECT FROM admitted), \
                    (SELECT EXTRACT(EPOCH FROM bucket_full + $2 - $3 - now())::float8 \
                     FROM command_rate_limits WHERE user_id = $1)",
        )
        .bind(user_id)
        .bind(self.quota.interval)
        .bind(self.quota.capacity)
        .fetch_one(&self.pool)
        .await?;
        if admitted {
            return Ok(());
        }
        metrics::counter!(crate::metrics::COMMANDS_RATE_LIMITED).increment(1);
        tracing::debug!(%user_id, "command refused: the user's command budget is spent");
        Err(AppError::TooManyRequests {
            retry_after_seconds: wait_seconds.unwrap_or(1.0).ceil().max(1.0) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_a_decimal_within_its_bounds() {
        for (raw, interval_us) in [("1", 1_000_000), ("0.5", 2_000_000), ("1000000", 1)] {
            let rate = CommandRate::parse(raw).unwrap();
            assert_eq!(
                rate.interval(),
                TimeDelta::microseconds(interval_us),
                "{raw}"
            );
        }
        for refused in ["0", "-1", "0.0001", "1000001", "NaN", "inf", "ten", ""] {
            assert!(CommandRate::parse(refused).is_err(), "{refused:?} accepted");
        }
    }

    #[test]
    fn the_bucket_holds_burst_intervals() {
        let quota = CommandQuota::new(CommandRate::parse("4").unwrap(), 10.try_into().unwrap());
        assert_eq!(quota.interval, TimeDelta::milliseconds(250));
        assert_eq!(quota.capacity, TimeDelta::milliseconds(2500));
    }
}
