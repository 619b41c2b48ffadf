//! Who asked and from where: recorded with every event a use case writes.

use chrono::Utc;
use uuid::Uuid;

use crate::power::Actor;

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub correlation_id: String,
    pub request_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// Metadata for one command's events; `causation_id` identifies the command.
    pub fn metadata_for(&self, command_id: Uuid) -> bus::EventMetadata {
        bus::EventMetadata {
            api_key_id: None,
            actor_id: None,
            correlation_id: Some(self.correlation_id.clone()),
            causation_id: Some(command_id.to_string()),
            request_ip: self.request_ip.clone(),
            user_agent: self.user_agent.clone(),
            occurred_at: Some(Utc::now()),
        }
    }

    /// Metadata for a new command, acting as `actor` (a user id) if known.
    pub fn metadata_as(&self, actor: Option<Uuid>) -> bus::EventMetadata {
        bus::EventMetadata {
            actor_id: actor.map(|id| id.to_string()),
            ..self.metadata_for(Uuid::new_v4())
        }
    }

    /// Metadata for a new command by `actor`: a person, or a service
    /// account with the API key it acted with.
    pub fn metadata_by(&self, actor: &Actor) -> bus::EventMetadata {
        bus::EventMetadata {
            api_key_id: actor.api_key_id.map(|id| id.to_string()),
            ..self.metadata_as(Some(actor.user_id))
        }
    }
}
