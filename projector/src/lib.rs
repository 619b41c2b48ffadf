//! The projector: consumes events from the broker and writes the read
//! models; rebuilds them from the event store.

pub mod apply;
pub mod projection;
pub mod rebuild;
pub mod roles_view;
pub mod sessions_view;
pub mod settings;
pub mod startup;
pub mod users_view;
pub mod views;
