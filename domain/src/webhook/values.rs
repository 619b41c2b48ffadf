use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::events::WebhookEvent;
use crate::contract::all_event_types;

/// Why a webhook input value was rejected. Messages do not name the field:
/// the caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookInputError {
    #[error("must be an absolute http or https URL")]
    NotAUrl(#[source] url::ParseError),
    #[error("must be an http or https URL")]
    Scheme,
    #[error("must name a host")]
    NoHost,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must not carry a fragment")]
    Fragment,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacters,
    /// The value is cut to its first 64 characters.
    #[error("unknown event type {0:?}: use a type such as user.registered, user.* or *")]
    UnknownEventType(String),
    #[error("must name at least one event type")]
    NoEventTypes,
    #[error("must name at most {max} event types")]
    TooManyEventTypes { max: usize },
}

/// Where deliveries go: an absolute `http` or `https` URL with a host, no
/// credentials and no fragment. Whether plain `http` is allowed and where
/// the host may resolve to are the deployment's policy, checked by the
/// application layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub const MAX_LEN: usize = 2000;

    pub fn parse(input: &str) -> Result<Self, WebhookInputError> {
        let trimmed = input.trim();
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(WebhookInputError::TooLong { max: Self::MAX_LEN });
        }
        let url = url::Url::parse(trimmed).map_err(WebhookInputError::NotAUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookInputError::Scheme);
        }
        if url.host().is_none() {
            return Err(WebhookInputError::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookInputError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(WebhookInputError::Fragment);
        }
        Ok(Self(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed URL (it parsed when it was made).
    pub fn url(&self) -> url::Url {
        url::Url::parse(&self.0).expect("a WebhookUrl parses")
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https:")
    }
}

/// Which events a webhook receives: one event type of the contract
/// (`session.revoked`), every type of one aggregate (`user.*`), or all (`*`).
/// `*` leaves out the webhooks' own events (`webhook.*`): a webhook gets
/// those only by naming them, so catch-all webhooks are not sent each
/// other's registrations (N of them would queue N(N−1)/2 deliveries).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventTypePattern(String);

impl EventTypePattern {
    const ALL: &'static str = "*";
    const ANY_OF_AGGREGATE: &'static str = ".*";

    /// Every pattern [`EventTypePattern::parse`] accepts: `*`, each
    /// aggregate's `<type>.*`, each event type.
    pub fn every() -> Vec<String> {
        std::iter::once(Self::ALL.to_owned())
            .chain(
                crate::contract::aggregate_types()
                    .into_iter()
                    .map(|aggregate| format!("{aggregate}{}", Self::ANY_OF_AGGREGATE)),
            )
            .chain(all_event_types().map(|event_type| event_type.name().to_owned()))
            .collect()
    }

    pub fn parse(input: &str) -> Result<Self, WebhookInputError> {
        let known = input == Self::ALL
            || all_event_types().any(|event_type| {
                event_type.name() == input
                    || input.strip_suffix(Self::ANY_OF_AGGREGATE)
                        == Some(event_type.aggregate_type())
            });
        if known {
            Ok(Self(input.to_owned()))
        } else {
            Err(WebhookInputError::UnknownEventType(
                input.chars().take(64).collect(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an event of this dotted type is selected.
    pub fn matches(&self, event_type: &str) -> bool {
        if self.0 == Self::ALL {
            return !is_webhook_event(event_type);
        }
        match self.0.strip_suffix(Self::ANY_OF_AGGREGATE) {
            Some(aggregate) => event_type
                .split_once('.')
                .is_some_and(|(kind, _)| kind == aggregate),
            None => self.0 == event_type,
        }
    }
}

/// Whether `event_type` is one of the webhooks' own events, which `*` leaves out.
fn is_webhook_event(event_type: &str) -> bool {
    WebhookEvent::EVENT_TYPES
        .iter()
        .any(|webhook_event| webhook_event.name() == event_type)
}

/// A webhook's patterns: 1 to [`EventTypePatterns::MAX`], without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeSet<EventTypePattern>",
    into = "BTreeSet<EventTypePattern>"
)]
pub struct EventTypePatterns(BTreeSet<EventTypePattern>);

impl EventTypePatterns {
    pub const MAX: usize = 20;

    pub fn new(patterns: BTreeSet<EventTypePattern>) -> Result<Self, WebhookInputError> {
        if patterns.is_empty() {
            return Err(WebhookInputError::NoEventTypes);
        }
        if patterns.len() > Self::MAX {
            return Err(WebhookInputError::TooManyEventTypes { max: Self::MAX });
        }
        Ok(Self(patterns))
    }

    pub fn iter(&self) -> impl Iterator<Item = &EventTypePattern> {
        self.0.iter()
    }

    pub fn matches(&self, event_type: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(event_type))
    }
}

impl TryFrom<BTreeSet<EventTypePattern>> for EventTypePatterns {
    type Error = WebhookInputError;

    fn try_from(value: BTreeSet<EventTypePattern>) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<EventTypePatterns> for BTreeSet<EventTypePattern> {
    fn from(value: EventTypePatterns) -> Self {
        value.0
    }
}

/// A trimmed text of at most 500 characters, possibly empty; line breaks
/// and tabs kept, other control characters refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookDescription(String);

impl WebhookDescription {
    pub const MAX_LEN: usize = 500;

    pub fn parse(input: &str) -> Result<Self, WebhookInputError> {
        let trimmed = input.trim();
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(WebhookInputError::TooLong { max: Self::MAX_LEN });
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(WebhookInputError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype {
    ($($type:ident),*) => {$(
        impl TryFrom<String> for $type {
            type Error = WebhookInputError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> Self {
                value.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

string_newtype!(WebhookUrl, EventTypePattern, WebhookDescription);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SessionEvent, UserEvent};

    fn pattern(value: &str) -> EventTypePattern {
        EventTypePattern::parse(value).unwrap()
    }

    #[test]
    fn every_pattern_listed_is_accepted_and_names_each_aggregate() {
        let every = EventTypePattern::every();
        assert!(every.iter().all(|p| EventTypePattern::parse(p).is_ok()));
        for expected in ["*", "user.*", "second_factor.*", "session.revoked"] {
            assert!(every.iter().any(|p| p == expected), "{expected}");
        }
        assert!(EventTypePattern::parse("").is_err());
    }

    #[test]
    fn a_url_is_absolute_http_or_https_with_a_host_and_nothing_secret() {
        assert!(WebhookUrl::parse("https://hooks.example.com/in?x=1").is_ok());
        assert!(WebhookUrl::parse(" http://127.0.0.1:9000/hook ").is_ok());
        let refused = [
            "not a url",
            "/relative",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://example.com/#frag",
            "file:///etc/passwd",
        ];
        for input in refused {
            assert!(WebhookUrl::parse(input).is_err(), "{input}");
        }
        let long = format!("https://example.com/{}", "a".repeat(WebhookUrl::MAX_LEN));
        assert_eq!(
            WebhookUrl::parse(&long),
            Err(WebhookInputError::TooLong {
                max: WebhookUrl::MAX_LEN
            })
        );
        assert!(WebhookUrl::parse("https://x.example/").unwrap().is_https());
    }

    #[test]
    fn patterns_name_a_contract_type_an_aggregate_or_everything() {
        for input in ["*", "user.*", "session.*", "webhook.*", "session.revoked"] {
            assert_eq!(pattern(input).as_str(), input);
        }
        for input in [
            "user.exploded",
            "order.*",
            "user",
            "user.**",
            "",
            "*.*",
            "USER.*",
        ] {
            assert!(
                matches!(
                    EventTypePattern::parse(input),
                    Err(WebhookInputError::UnknownEventType(_))
                ),
                "{input}"
            );
        }
    }

    #[test]
    fn a_pattern_matches_what_it_names_and_nothing_else() {
        let registered = UserEvent::REGISTERED.name();
        let revoked = SessionEvent::REVOKED.name();
        assert!(pattern("*").matches(registered));
        assert!(pattern("user.*").matches(registered));
        assert!(!pattern("user.*").matches(revoked));
        assert!(pattern(revoked).matches(revoked));
        assert!(!pattern(revoked).matches(SessionEvent::EXPIRED.name()));
    }

    #[test]
    fn everything_leaves_out_the_webhooks_own_events_which_are_had_by_name() {
        for webhook_event in WebhookEvent::EVENT_TYPES {
            let name = webhook_event.name();
            assert!(!pattern("*").matches(name), "{name}");
            assert!(pattern("webhook.*").matches(name), "{name}");
            assert!(pattern(name).matches(name), "{name}");
        }
        let others = all_event_types().filter(|t| !WebhookEvent::EVENT_TYPES.contains(t));
        for other in others {
            assert!(pattern("*").matches(other.name()), "{other}");
        }
    }

    #[test]
    fn a_set_of_patterns_is_not_empty_nor_too_long() {
        assert_eq!(
            EventTypePatterns::new(BTreeSet::new()),
            Err(WebhookInputError::NoEventTypes)
        );
        let many: BTreeSet<EventTypePattern> = all_event_types()
            .take(EventTypePatterns::MAX + 1)
            .map(|event_type| pattern(event_type.name()))
            .collect();
        assert_eq!(
            EventTypePatterns::new(many),
            Err(WebhookInputError::TooManyEventTypes {
                max: EventTypePatterns::MAX
            })
        );
        let one = EventTypePatterns::new(BTreeSet::from([pattern("user.*")])).unwrap();
        assert!(one.matches(UserEvent::LOCKED.name()));
        assert!(!one.matches(SessionEvent::STARTED.name()));
    }

    #[test]
    fn a_description_is_bounded_and_free_of_control_characters() {
        assert_eq!(
            WebhookDescription::parse("  CRM sync ").unwrap().as_str(),
            "CRM sync"
        );
        assert!(WebhookDescription::parse("a\u{7}b").is_err());
        assert!(WebhookDescription::parse(&"x".repeat(501)).is_err());
    }

    #[test]
    fn patterns_deserialize_only_when_valid() {
        assert!(serde_json::from_str::<EventTypePatterns>(r#"["user.*"]"#).is_ok());
        assert!(serde_json::from_str::<EventTypePatterns>("[]").is_err());
        assert!(serde_json::from_str::<EventTypePatterns>(r#"["nope"]"#).is_err());
    }
}
