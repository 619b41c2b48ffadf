use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{AcknowledgementReason, SignedPoint};
use crate::contract::EventType;

/// What happened to the [`AuditSigner`](super::AuditSigner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuditSignerEvent {
    /// An operator let the signer go on from `adopted` although it last
    /// signed `previous`, which the log no longer extends.
    LogAcknowledged {
        previous: Option<SignedPoint>,
        adopted: Option<SignedPoint>,
        reason: AcknowledgementReason,
    },
}

impl AuditSignerEvent {
    pub const LOG_ACKNOWLEDGED: EventType =
        EventType::new("audit_signer.log_acknowledged", "LogAcknowledged");

    /// Every value [`DomainEvent::event_type`] can return.
    pub const EVENT_TYPES: &'static [EventType] = &[Self::LOG_ACKNOWLEDGED];

    /// This event's entry in the event contract.
    pub fn contract_type(&self) -> EventType {
        match self {
            Self::LogAcknowledged { .. } => Self::LOG_ACKNOWLEDGED,
        }
    }

    /// One readable line for auditors.
    pub fn summary(&self) -> String {
        let point = |point: &Option<SignedPoint>| match point {
            Some(point) => format!(
                "the checkpoint of {} events at position {}",
                point.event_count, point.global_position
            ),
            None => "the start of the log".to_owned(),
        };
        match self {
            Self::LogAcknowledged {
                previous,
                adopted,
                reason,
            } => format!(
                "signer acknowledged a log not extending {}, going on from {}: {}",
                point(previous),
                point(adopted),
                reason.as_str()
            ),
        }
    }

    /// No secrets: nothing to replace.
    pub fn redact_secrets(&mut self) {
        match self {
            Self::LogAcknowledged { .. } => {}
        }
    }
}

impl DomainEvent for AuditSignerEvent {
    fn event_type(&self) -> String {
        self.contract_type().name().to_owned()
    }

    fn event_version(&self) -> String {
        self.contract_type().version().to_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn point(event_count: i64) -> SignedPoint {
        SignedPoint {
            transaction_id: 700 + event_count,
            global_position: event_count,
            running_hash: "ab".repeat(32),
            event_count,
        }
    }

    pub(crate) fn all_events() -> Vec<AuditSignerEvent> {
        vec![AuditSignerEvent::LogAcknowledged {
            previous: Some(point(12)),
            adopted: Some(point(8)),
            reason: AcknowledgementReason::parse("restored the backup of 1 May").unwrap(),
        }]
    }

    #[test]
    fn every_event_has_a_summary() {
        let summaries: Vec<String> = all_events().iter().map(AuditSignerEvent::summary).collect();
        assert_eq!(
            summaries,
            [
                "signer acknowledged a log not extending the checkpoint of 12 events at position \
              12, going on from the checkpoint of 8 events at position 8: restored the backup \
              of 1 May"
            ]
        );
    }
}
