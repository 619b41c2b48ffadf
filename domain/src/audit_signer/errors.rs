/// Business-rule rejections of an [`AuditSignerCommand`](super::AuditSignerCommand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditSignerError {
    /// The log already extends what the signer last signed.
    #[error("the log holds the checkpoint the signer last signed: nothing to acknowledge")]
    NothingToAcknowledge,
}
