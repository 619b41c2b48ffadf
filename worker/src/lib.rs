//! The `worker` process: side effects of events. Locks users after repeated
//! login failures (`lockout`), expires sessions past their deadlines
//! (`expiry`).

pub mod expiry;
pub mod lockout;
pub mod metrics;
pub mod settings;
pub mod startup;
pub mod webhooks;
