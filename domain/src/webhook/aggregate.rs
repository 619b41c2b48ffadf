use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::WebhookCommand;
use super::errors::WebhookError;
use super::events::WebhookEvent;
use super::values::{EventTypePatterns, WebhookDescription, WebhookUrl};

/// An integrator's endpoint. All fields are `None` until it is registered;
/// a deleted webhook keeps its last values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Webhook {
    id: Option<Uuid>,
    url: Option<WebhookUrl>,
    event_types: Option<EventTypePatterns>,
    description: WebhookDescription,
    enabled: bool,
    secret_id: Option<Uuid>,
    previous_secret: Option<(Uuid, DateTime<Utc>)>,
    deleted: bool,
}

impl Webhook {
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    pub fn url(&self) -> Option<&WebhookUrl> {
        self.url.as_ref()
    }

    pub fn event_types(&self) -> Option<&EventTypePatterns> {
        self.event_types.as_ref()
    }

    pub fn description(&self) -> &WebhookDescription {
        &self.description
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Registered and not deleted.
    pub fn exists(&self) -> bool {
        self.id.is_some() && !self.deleted
    }

    /// Whether an event of this dotted type is to be delivered here now.
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.exists()
            && self.enabled
            && self
                .event_types
                .as_ref()
                .is_some_and(|types| types.matches(event_type))
    }

    /// The secrets that sign a delivery made at `now`: the current one, and
    /// the one it replaced while its overlap lasts.
    pub fn signing_secret_ids(&self, now: DateTime<Utc>) -> Vec<Uuid> {
        let previous = self
            .previous_secret
            .filter(|(_, until)| now < *until)
            .map(|(id, _)| id);
        self.secret_id.into_iter().chain(previous).collect()
    }

    fn decide(&self, command: WebhookCommand) -> Result<Vec<WebhookEvent>, WebhookError> {
        match command {
            WebhookCommand::Register {
                webhook_id,
                url,
                event_types,
                description,
                secret_id,
            } => {
                if self.id.is_some() {
                    return Err(WebhookError::AlreadyExists);
                }
                Ok(vec![WebhookEvent::Registered {
                    webhook_id,
                    url,
                    event_types,
                    description,
                    secret_id,
                }])
            }
            WebhookCommand::Update {
                url,
                event_types,
                description,
                enabled,
            } => {
                self.ensure_exists()?;
                Ok(self.changes(url, event_types, description, enabled))
            }
            WebhookCommand::RotateSecret {
                secret_id,
                previous_valid_until,
            } => {
                self.ensure_exists()?;
                let previous_secret_id = self.secret_id.ok_or(WebhookError::NotFound)?;
                Ok(vec![WebhookEvent::SecretRotated {
                    secret_id,
                    previous_secret_id,
                    previous_valid_until,
                }])
            }
            WebhookCommand::Delete => {
                self.ensure_exists()?;
                Ok(vec![WebhookEvent::Deleted])
            }
        }
    }

    /// One event per field that changes; none when nothing does.
    fn changes(
        &self,
        url: Option<WebhookUrl>,
        event_types: Option<EventTypePatterns>,
        description: Option<WebhookDescription>,
        enabled: Option<bool>,
    ) -> Vec<WebhookEvent> {
        let url = url
            .filter(|url| self.url.as_ref() != Some(url))
            .map(|url| WebhookEvent::UrlChanged { url });
        let event_types = event_types
            .filter(|types| self.event_types.as_ref() != Some(types))
            .map(|event_types| WebhookEvent::EventTypesChanged { event_types });
        let description = description
            .filter(|description| &self.description != description)
            .map(|description| WebhookEvent::DescriptionChanged { description });
        let enabled = enabled
            .filter(|enabled| *enabled != self.enabled)
            .map(|enabled| {
                if enabled {
                    WebhookEvent::Enabled
                } else {
                    WebhookEvent::Disabled
                }
            });
        [url, event_types, description, enabled]
            .into_iter()
            .flatten()
            .collect()
    }

    fn ensure_exists(&self) -> Result<(), WebhookError> {
        if self.exists() {
            Ok(())
        } else {
            Err(WebhookError::NotFound)
        }
    }
}

impl Aggregate for Webhook {
    const TYPE: &'static str = "webhook";
    type Command = WebhookCommand;
    type Event = WebhookEvent;
    type Error = WebhookError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WebhookEvent::Registered {
                webhook_id,
                url,
                event_types,
                description,
                secret_id,
            } => {
                self.id = Some(webhook_id);
                self.url = Some(url);
                self.event_types = Some(event_types);
                self.description = description;
                self.enabled = true;
                self.secret_id = Some(secret_id);
            }
            WebhookEvent::UrlChanged { url } => self.url = Some(url),
            WebhookEvent::EventTypesChanged { event_types } => self.event_types = Some(event_types),
            WebhookEvent::DescriptionChanged { description } => self.description = description,
            WebhookEvent::Disabled => self.enabled = false,
            WebhookEvent::Enabled => self.enabled = true,
            WebhookEvent::SecretRotated {
                secret_id,
                previous_secret_id,
                previous_valid_until,
            } => {
                self.secret_id = Some(secret_id);
                self.previous_secret = Some((previous_secret_id, previous_valid_until));
            }
            WebhookEvent::Deleted => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::webhook::events::tests::{patterns, registered};
    use crate::{SessionEvent, UserEvent};

    type WebhookTest = TestFramework<Webhook>;

    fn register() -> WebhookCommand {
        WebhookCommand::Register {
            webhook_id: Uuid::nil(),
            url: WebhookUrl::parse("https://hooks.example.com/in").unwrap(),
            event_types: patterns(&["user.*", "session.revoked"]),
            description: WebhookDescription::parse("CRM").unwrap(),
            secret_id: Uuid::from_u128(1),
        }
    }

    fn update() -> WebhookCommand {
        WebhookCommand::Update {
            url: None,
            event_types: None,
            description: None,
            enabled: None,
        }
    }

    fn enable() -> WebhookCommand {
        WebhookCommand::Update {
            url: None,
            event_types: None,
            description: None,
            enabled: Some(true),
        }
    }

    fn until() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn rotate() -> WebhookCommand {
        WebhookCommand::RotateSecret {
            secret_id: Uuid::from_u128(2),
            previous_valid_until: until(),
        }
    }

    #[test]
    fn registering_records_the_subscription() {
        WebhookTest::with(())
            .given_no_previous_events()
            .when(register())
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn registering_twice_is_refused() {
        WebhookTest::with(())
            .given(vec![registered()])
            .when(register())
            .then_expect_error(WebhookError::AlreadyExists);
    }

    #[test]
    fn every_other_command_needs_a_live_webhook() {
        for command in [update(), rotate(), WebhookCommand::Delete] {
            WebhookTest::with(())
                .given_no_previous_events()
                .when(command.clone())
                .then_expect_error(WebhookError::NotFound);
            WebhookTest::with(())
                .given(vec![registered(), WebhookEvent::Deleted])
                .when(command)
                .then_expect_error(WebhookError::NotFound);
        }
    }

    #[test]
    fn an_update_records_one_event_per_changed_field() {
        let url = WebhookUrl::parse("https://hooks.example.com/v2").unwrap();
        WebhookTest::with(())
            .given(vec![registered()])
            .when(WebhookCommand::Update {
                url: Some(url.clone()),
                event_types: Some(patterns(&["user.*", "session.revoked"])),
                description: Some(WebhookDescription::parse("CRM").unwrap()),
                enabled: Some(false),
            })
            .then_expect_events(vec![
                WebhookEvent::UrlChanged { url },
                WebhookEvent::Disabled,
            ]);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        WebhookTest::with(())
            .given(vec![registered()])
            .when(enable())
            .then_expect_events(vec![]);
    }

    #[test]
    fn enabling_a_disabled_webhook_is_recorded() {
        WebhookTest::with(())
            .given(vec![registered(), WebhookEvent::Disabled])
            .when(enable())
            .then_expect_events(vec![WebhookEvent::Enabled]);
    }

    #[test]
    fn rotating_names_the_secret_it_replaces() {
        WebhookTest::with(())
            .given(vec![registered()])
            .when(rotate())
            .then_expect_events(vec![WebhookEvent::SecretRotated {
                secret_id: Uuid::from_u128(2),
                previous_secret_id: Uuid::from_u128(1),
                previous_valid_until: until(),
            }]);
    }

    #[test]
    fn deleting_is_recorded() {
        WebhookTest::with(())
            .given(vec![registered()])
            .when(WebhookCommand::Delete)
            .then_expect_events(vec![WebhookEvent::Deleted]);
    }

    fn folded(events: Vec<WebhookEvent>) -> Webhook {
        let mut webhook = Webhook::default();
        for event in events {
            webhook.apply(event);
        }
        webhook
    }

    #[test]
    fn a_live_enabled_webhook_subscribes_to_matching_types_only() {
        let live = folded(vec![registered()]);
        assert!(live.subscribes_to(UserEvent::REGISTERED.name()));
        assert!(live.subscribes_to(SessionEvent::REVOKED.name()));
        assert!(!live.subscribes_to(SessionEvent::STARTED.name()));
        let disabled = folded(vec![registered(), WebhookEvent::Disabled]);
        assert!(!disabled.subscribes_to(UserEvent::REGISTERED.name()));
        let deleted = folded(vec![registered(), WebhookEvent::Deleted]);
        assert!(!deleted.subscribes_to(UserEvent::REGISTERED.name()));
    }

    fn subscribed_to(types: &[&str]) -> WebhookEvent {
        WebhookEvent::EventTypesChanged {
            event_types: patterns(types),
        }
    }

    #[test]
    fn a_catch_all_webhook_is_sent_the_webhooks_own_events_only_when_it_names_them() {
        let catch_all = folded(vec![registered(), subscribed_to(&["*"])]);
        let watcher = folded(vec![registered(), subscribed_to(&["*", "webhook.*"])]);
        for webhook_event in WebhookEvent::EVENT_TYPES {
            let name = webhook_event.name();
            assert!(!catch_all.subscribes_to(name), "{name}");
            assert!(watcher.subscribes_to(name), "{name}");
        }
        assert!(catch_all.subscribes_to(UserEvent::REGISTERED.name()));
    }

    #[test]
    fn the_previous_secret_signs_until_its_overlap_ends() {
        let rotated = folded(vec![
            registered(),
            WebhookEvent::SecretRotated {
                secret_id: Uuid::from_u128(2),
                previous_secret_id: Uuid::from_u128(1),
                previous_valid_until: until(),
            },
        ]);
        let before = until() - chrono::TimeDelta::seconds(1);
        assert_eq!(
            rotated.signing_secret_ids(before),
            [Uuid::from_u128(2), Uuid::from_u128(1)]
        );
        assert_eq!(rotated.signing_secret_ids(until()), [Uuid::from_u128(2)]);
        assert_eq!(
            folded(vec![registered()]).signing_secret_ids(until()),
            [Uuid::from_u128(1)]
        );
    }
}
