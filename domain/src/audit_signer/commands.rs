use super::values::{AcknowledgementReason, SignedPoint};

/// Requests to the [`AuditSigner`](super::AuditSigner)'s stream.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum AuditSignerCommand {
    /// The signer may go on from `adopted` (the newest checkpoint the log
    /// holds, or its start) although it last signed `previous`.
    Acknowledge {
        previous: Option<SignedPoint>,
        adopted: Option<SignedPoint>,
        reason: AcknowledgementReason,
    },
}
