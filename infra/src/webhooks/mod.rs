//! What the api and the worker share about webhooks: where a delivery may
//! go (the destination policy, checked at registration and again at every
//! delivery), the signing secrets, and the subscriptions as the event store
//! has them.

pub mod destination;
pub mod secrets;
pub mod subscriptions;

pub use destination::{Destination, DestinationError, DestinationPolicy};
pub use secrets::{SecretStore, SigningSecret};
pub use subscriptions::Subscriptions;
