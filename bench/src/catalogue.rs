//! Every figure of the bench's table: its key in the JSON, its label, its
//! unit, whether it is measured against a limit of the same run, and the
//! target (issue 22's, where it set one).

/// A target on the figure's ratio to its limit when it has one, else on its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    Below(f64),
    /// No target: reported only.
    Report,
}

impl Target {
    /// Whether `measured` meets the target (None: reported only).
    pub fn met(self, measured: f64) -> Option<bool> {
        match self {
            Self::AtMost(bound) => Some(measured <= bound),
            Self::AtLeast(bound) => Some(measured >= bound),
            Self::Below(bound) => Some(measured < bound),
            Self::Report => None,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Self::AtMost(bound) => format!("<= {bound}"),
            Self::AtLeast(bound) => format!(">= {bound}"),
            Self::Below(bound) => format!("< {bound}"),
            Self::Report => "report".into(),
        }
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// The limit measured in the same run, the ratio's denominator.
    pub limit: Option<&'static str>,
    pub target: Target,
    /// The target applies to the value even beside a limit (the limit is
    /// shown for what the value could be).
    pub target_on_value: bool,
}

macro_rules! spec {
    ($name:ident, $key:literal, $label:literal, $unit:literal, $limit:expr, $target:expr) => {
        spec!($name, $key, $label, $unit, $limit, $target, false);
    };
    ($name:ident, $key:literal, $label:literal, $unit:literal, $limit:expr, $target:expr, $on_value:expr) => {
        pub const $name: Spec = Spec {
            key: $key,
            label: $label,
            unit: $unit,
            limit: $limit,
            target: $target,
            target_on_value: $on_value,
        };
    };
}

spec!(
    COMMAND_COST,
    "command_cost_vs_stream_length",
    "PATCH display name, median at the long stream",
    "ms",
    Some("median at 10 events"),
    Target::AtMost(1.2)
);
spec!(
    REFRESH_PER_CORE,
    "refresh_rotations_per_core",
    "refresh rotations/s per core",
    "1/s",
    None,
    Target::AtLeast(500.0)
);
spec!(
    CHEAP_COMMANDS,
    "cheap_commands_vs_raw_insert",
    "cheap commands/s (PATCH own display name)",
    "1/s",
    Some("event-row inserts/s: same columns and indexes, no trigger"),
    Target::AtLeast(0.5)
);
spec!(
    CHEAP_COMMAND_CPU,
    "cheap_command_cpu_ms",
    "cheap command, CPU of every process per command",
    "ms",
    None,
    Target::AtMost(1.5)
);
spec!(
    REFRESH_CPU,
    "refresh_rotation_cpu_ms",
    "refresh rotation, CPU of every process per rotation",
    "ms",
    None,
    Target::AtMost(2.0)
);
spec!(
    WRITE_READ_IDLE,
    "write_to_read_idle_p99",
    "write -> read (min_position), idle, p99",
    "ms",
    None,
    Target::AtMost(50.0)
);
spec!(
    WRITE_READ_LOADED,
    "write_to_read_loaded_p99",
    "write -> read, at half the command rate, p99",
    "ms",
    None,
    Target::AtMost(25.0)
);
spec!(
    LOGINS,
    "logins_vs_argon2id",
    "logins/s",
    "1/s",
    Some("argon2id hashes/s, all cores"),
    Target::AtLeast(0.9)
);
spec!(
    ME_RATE,
    "users_me_rate",
    "GET /v1/users/me",
    "1/s",
    None,
    Target::Report
);
spec!(
    API_KEY_READS,
    "api_key_reads_vs_jwt",
    "GET /v1/users/{id} with an API key",
    "1/s",
    Some("the same reads with access tokens (JWT)"),
    Target::Report
);
spec!(
    ME_P99,
    "users_me_p99",
    "GET /v1/users/me, p99",
    "ms",
    None,
    Target::Report
);
spec!(
    ME_CPU,
    "users_me_api_cpu",
    "GET /v1/users/me, api CPU per request",
    "ms",
    None,
    Target::Report
);
spec!(
    RELAY,
    "relay_events_per_second",
    "relay: backlog commit -> broker confirm",
    "1/s",
    Some("bare publisher with confirms, one quorum queue"),
    Target::AtLeast(20_000.0),
    true
);
spec!(
    REBUILD,
    "projector_rebuild_events_per_second",
    "projector rebuild, every view",
    "1/s",
    Some("PostgreSQL reading the same rows"),
    Target::AtLeast(50_000.0),
    true
);
spec!(
    VERIFY,
    "audit_verify_vs_sha256",
    "api audit verify",
    "events/s",
    Some("SHA-256 of the same bytes in memory"),
    Target::AtLeast(200_000.0),
    true
);
spec!(
    VERIFY_LATENCY,
    "users_me_p99_during_verification",
    "GET /v1/users/me p99, full verification passes running",
    "ms",
    Some("p99 idle, same clients"),
    // Issue 21: everyone else's latency must not move.
    Target::AtMost(1.5)
);
spec!(
    VERIFY_PASS_RATE,
    "audit_verify_background_pass_events_per_second",
    "background verification, full pass",
    "events/s",
    None,
    Target::Report
);
spec!(
    EXPORT_RATE,
    "audit_export_mb_per_second",
    "GET /v1/audit/export",
    "MB/s",
    None,
    Target::Report
);
spec!(
    EXPORT_RSS,
    "audit_export_api_rss_growth",
    "api RSS growth during the export",
    "MiB",
    None,
    Target::Below(100.0)
);
spec!(
    API_IDLE,
    "memory_api_idle",
    "api RSS idle",
    "MiB",
    None,
    Target::Report
);
spec!(
    API_PEAK,
    "memory_api_peak",
    "api RSS peak under load",
    "MiB",
    None,
    Target::Report
);
spec!(
    PROJECTOR_IDLE,
    "memory_projector_idle",
    "projector RSS idle",
    "MiB",
    None,
    Target::Report
);
spec!(
    PROJECTOR_PEAK,
    "memory_projector_peak",
    "projector RSS peak under load",
    "MiB",
    None,
    Target::Report
);
spec!(
    WORKER_IDLE,
    "memory_worker_idle",
    "worker RSS idle",
    "MiB",
    None,
    Target::Report
);
spec!(
    WORKER_PEAK,
    "memory_worker_peak",
    "worker RSS peak under load",
    "MiB",
    None,
    Target::Report
);

/// Every figure, in the table's order.
pub const FIGURES: &[Spec] = &[
    COMMAND_COST,
    REFRESH_PER_CORE,
    REFRESH_CPU,
    CHEAP_COMMANDS,
    CHEAP_COMMAND_CPU,
    WRITE_READ_IDLE,
    WRITE_READ_LOADED,
    LOGINS,
    ME_RATE,
    ME_P99,
    ME_CPU,
    API_KEY_READS,
    RELAY,
    REBUILD,
    VERIFY,
    VERIFY_LATENCY,
    VERIFY_PASS_RATE,
    EXPORT_RATE,
    EXPORT_RSS,
    API_IDLE,
    API_PEAK,
    PROJECTOR_IDLE,
    PROJECTOR_PEAK,
    WORKER_IDLE,
    WORKER_PEAK,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<_> = FIGURES.iter().map(|spec| spec.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), FIGURES.len());
    }

    #[test]
    fn targets_compare_as_named() {
        assert_eq!(Target::AtMost(1.2).met(1.2), Some(true));
        assert_eq!(Target::AtMost(1.2).met(1.3), Some(false));
        assert_eq!(Target::AtLeast(0.4).met(0.39), Some(false));
        assert_eq!(Target::Below(100.0).met(100.0), Some(false));
        assert_eq!(Target::Report.met(5.0), None);
    }
}
