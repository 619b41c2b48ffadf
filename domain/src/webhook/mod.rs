//! Webhook subscriptions: an integrator's endpoint, the event types it
//! wants and the id of the secret that signs what it receives. The secret
//! itself is never in an event (only its id); the worker delivers.

mod address;
mod aggregate;
mod commands;
mod errors;
mod events;
mod limit;
mod values;

pub use address::is_forbidden_address;
pub use aggregate::Webhook;
pub use commands::WebhookCommand;
pub use errors::WebhookError;
pub use events::WebhookEvent;
pub use limit::{WebhookLimit, WebhookLimitReached};
pub use values::{
    EventTypePattern, EventTypePatterns, WebhookDescription, WebhookInputError, WebhookUrl,
};

#[cfg(test)]
pub(crate) use events::tests::all_events as test_events;
