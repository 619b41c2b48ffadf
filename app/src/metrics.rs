//! The use cases' metrics: password hashing, address blocking and the
//! per-user command limit.
//! Registered by the api at start, so they exist at zero.

use metrics::{describe_counter, Unit};

/// argon2id verifications (logins, including unknown emails).
pub const PASSWORD_VERIFICATIONS: &str = "password_verifications_total";
/// Hashes refused with 503 because the hashing queue was full.
pub const HASHING_REFUSED: &str = "password_hashing_refused_total";
/// Verifications refused with 429 because their account had 2 in flight.
pub const HASHING_REFUSED_PER_ACCOUNT: &str = "password_hashing_refused_per_account_total";
/// Failed credential checks that set or extended an address block.
pub const ADDRESSES_BLOCKED: &str = "auth_addresses_blocked_total";
/// Commands refused with 429 because their user's command budget was spent.
pub const COMMANDS_RATE_LIMITED: &str = "command_rate_limited_total";

/// The metrics registered at start (at zero).
pub const NAMES: &[&str] = &[
    PASSWORD_VERIFICATIONS,
    HASHING_REFUSED,
    HASHING_REFUSED_PER_ACCOUNT,
    ADDRESSES_BLOCKED,
    COMMANDS_RATE_LIMITED,
];

/// Describes the use cases' metrics and starts them at zero.
pub fn register() {
    describe_counter!(
        PASSWORD_VERIFICATIONS,
        Unit::Count,
        "argon2id password verifications, including those against the decoy for unknown emails."
    );
    describe_counter!(
        HASHING_REFUSED,
        Unit::Count,
        "Password hashes refused with 503 because the hashing queue was full (saturation)."
    );
    describe_counter!(
        HASHING_REFUSED_PER_ACCOUNT,
        Unit::Count,
        "Password verifications refused with 429 because their account already had 2 in flight."
    );
    describe_counter!(
        ADDRESSES_BLOCKED,
        Unit::Count,
        "Failed credential checks that set or extended a client address block."
    );
    describe_counter!(
        COMMANDS_RATE_LIMITED,
        Unit::Count,
        "Commands refused with 429 because their user had spent the per-user command budget."
    );
    for name in NAMES {
        metrics::counter!(*name).increment(0);
    }
}
