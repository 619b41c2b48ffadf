//! Proving the log unaltered: every event's seal and its link to the one
//! before it in its stream, and the signed checkpoints of the running hash
//! over the whole log. From the database ([`verify_store`]) or from an
//! export alone ([`ExportVerifier`]), streaming in both cases; and the
//! operator's acknowledgement to a refusing checkpoint signer.

mod acknowledge;
#[allow(clippy::result_large_err)]
mod background;
// A `Broken` is the verdict of a whole verification, made at most once: its
// size on the error path does not matter.
#[allow(clippy::result_large_err)]
mod check;
#[allow(clippy::result_large_err)]
mod export;
#[allow(clippy::result_large_err)]
mod markers;
mod report;
#[allow(clippy::result_large_err)]
mod rows;
#[allow(clippy::result_large_err)]
mod store;

pub use acknowledge::{acknowledge, AcknowledgeError, Acknowledged};
pub use background::{
    request_full_pass, standing_state, BackgroundVerifier, StandingState, VerifierSettings,
    VERIFIER_LOCK,
};
pub use export::{ExportLineError, ExportVerifier};
pub use report::{Broken, Reason, UnprovenTail, VerifyReport};
pub use store::{listed_keys, public_keys, verify_store, ListedKey};
