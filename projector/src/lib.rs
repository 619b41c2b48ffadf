//! The projector: consumes events from the broker and writes the read
//! models; rebuilds them from the event store.

pub mod projection;
pub mod rebuild;
pub mod settings;
pub mod startup;
pub mod users_view;
