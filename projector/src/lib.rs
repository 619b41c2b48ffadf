//! The projector: consumes events from the broker and writes the read
//! models; rebuilds them from the event store.
//!
//! Modules depend downwards only: `projection` and `rebuild` drive `apply`
//! (idempotency, gap filling), which reads and writes rows through
//! `executor` and decides what to write with the pure reducers in `views`.

pub mod apply;
pub mod executor;
pub mod projection;
pub mod rebuild;
pub mod settings;
pub mod startup;
pub mod views;
