//! The projector: consumes events from the broker and writes the read
//! models (the views `users_view` with `user_roles_view`, `roles_view`,
//! `sessions_view`, and the `audit_log`, a row per event); rebuilds them from
//! the event store.
//!
//! Modules depend downwards only: `projection` and `rebuild` drive `apply`
//! (idempotency, gap filling), which reads and writes rows through
//! `executor` and decides what to write with the pure reducers in `views`;
//! they record audit log rows through `executor` too.

pub mod apply;
pub mod batch;
pub mod bulk;
pub mod copy_text;
pub mod executor;
pub mod in_memory;
pub mod metrics;
pub mod projection;
pub mod rebuild;
pub mod set_based;
pub mod settings;
pub mod startup;
pub mod views;
