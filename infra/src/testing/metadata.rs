//! Event metadata as the API writes it.

use bus::EventMetadata;
use uuid::Uuid;

/// The metadata of a request by `actor` from a local client named `user_agent`.
pub fn request_metadata(actor: Option<Uuid>, user_agent: &str) -> EventMetadata {
    EventMetadata {
        api_key_id: None,
        actor_id: actor.map(|id| id.to_string()),
        correlation_id: Some(Uuid::new_v4().to_string()),
        causation_id: Some(Uuid::new_v4().to_string()),
        request_ip: Some("127.0.0.1".into()),
        user_agent: Some(user_agent.into()),
        occurred_at: Some(super::now()),
    }
}
