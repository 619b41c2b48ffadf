//! The audit log's checkpoint signer, as far as the log records it: an
//! operator's acknowledgement that the signer may sign a log that does not
//! extend the checkpoint it last signed (checkpoints deleted, history cut,
//! an older backup restored). One stream per signing key.

mod aggregate;
mod commands;
mod errors;
mod events;
mod values;

pub use aggregate::AuditSigner;
pub use commands::AuditSignerCommand;
pub use errors::AuditSignerError;
pub use events::AuditSignerEvent;
pub use values::{AcknowledgementReason, SignedPoint};

#[cfg(test)]
pub(crate) use events::tests::all_events as test_events;
