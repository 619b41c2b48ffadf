use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{EventTypePatterns, WebhookDescription, WebhookUrl};

/// Requests to change a [`Webhook`](super::Webhook). Values arrive already validated.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum WebhookCommand {
    Register {
        webhook_id: Uuid,
        url: WebhookUrl,
        event_types: EventTypePatterns,
        description: WebhookDescription,
        secret_id: Uuid,
    },
    /// Each `Some` field is set; the rest stay.
    Update {
        url: Option<WebhookUrl>,
        event_types: Option<EventTypePatterns>,
        description: Option<WebhookDescription>,
        enabled: Option<bool>,
    },
    /// `secret_id` signs from now on; the current secret keeps signing
    /// alongside it until `previous_valid_until`.
    RotateSecret {
        secret_id: Uuid,
        previous_valid_until: DateTime<Utc>,
    },
    Delete,
}
