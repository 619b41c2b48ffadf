//! The outbox relay: the event table is the outbox. The api binary runs it
//! by default; the `relay` binary runs it alone. Either way one process at a
//! time is elected (a PostgreSQL advisory lock) and the others wait.

pub mod fold;
pub mod metrics;
pub mod outbox;
mod relay;
pub mod seal;
pub mod settings;
pub mod startup;

pub use fold::{Refusal, RefusalReason};
pub use relay::{run, Relay, RELAY_CHECKPOINT};
pub use seal::{LogSealer, SealError, SealSettings};
pub use settings::RelaySettings;
