use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::AuditSignerCommand;
use super::errors::AuditSignerError;
use super::events::AuditSignerEvent;
use super::values::SignedPoint;

/// One signing key's acknowledgements: where the signer was told to go on
/// from, and how often.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditSigner {
    acknowledgements: u64,
    adopted: Option<SignedPoint>,
}

impl AuditSigner {
    pub fn acknowledgements(&self) -> u64 {
        self.acknowledgements
    }

    pub fn adopted(&self) -> Option<&SignedPoint> {
        self.adopted.as_ref()
    }

    fn decide(
        &self,
        command: AuditSignerCommand,
    ) -> Result<Vec<AuditSignerEvent>, AuditSignerError> {
        match command {
            AuditSignerCommand::Acknowledge {
                previous,
                adopted,
                reason,
            } => {
                if previous == adopted {
                    return Err(AuditSignerError::NothingToAcknowledge);
                }
                Ok(vec![AuditSignerEvent::LogAcknowledged {
                    previous,
                    adopted,
                    reason,
                }])
            }
        }
    }
}

impl Aggregate for AuditSigner {
    const TYPE: &'static str = "audit_signer";
    type Command = AuditSignerCommand;
    type Event = AuditSignerEvent;
    type Error = AuditSignerError;
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
            AuditSignerEvent::LogAcknowledged { adopted, .. } => {
                self.acknowledgements += 1;
                self.adopted = adopted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::super::events::tests::point;
    use super::super::values::AcknowledgementReason;
    use super::*;

    type SignerTest = TestFramework<AuditSigner>;

    fn acknowledge(
        previous: Option<SignedPoint>,
        adopted: Option<SignedPoint>,
    ) -> AuditSignerCommand {
        AuditSignerCommand::Acknowledge {
            previous,
            adopted,
            reason: AcknowledgementReason::parse("restored a backup").unwrap(),
        }
    }

    #[test]
    fn a_log_cut_back_to_an_older_checkpoint_is_acknowledged() {
        SignerTest::with(())
            .given_no_previous_events()
            .when(acknowledge(Some(point(12)), Some(point(8))))
            .then_expect_events(vec![AuditSignerEvent::LogAcknowledged {
                previous: Some(point(12)),
                adopted: Some(point(8)),
                reason: AcknowledgementReason::parse("restored a backup").unwrap(),
            }]);
    }

    #[test]
    fn a_log_without_any_checkpoint_left_is_acknowledged_from_its_start() {
        SignerTest::with(())
            .given_no_previous_events()
            .when(acknowledge(Some(point(12)), None))
            .then_expect_events(vec![AuditSignerEvent::LogAcknowledged {
                previous: Some(point(12)),
                adopted: None,
                reason: AcknowledgementReason::parse("restored a backup").unwrap(),
            }]);
    }

    #[test]
    fn a_log_that_extends_the_state_needs_no_acknowledgement() {
        SignerTest::with(())
            .given_no_previous_events()
            .when(acknowledge(Some(point(12)), Some(point(12))))
            .then_expect_error(AuditSignerError::NothingToAcknowledge);
    }

    #[test]
    fn applying_an_acknowledgement_remembers_what_was_adopted() {
        let mut signer = AuditSigner::default();
        signer.apply(AuditSignerEvent::LogAcknowledged {
            previous: Some(point(12)),
            adopted: Some(point(8)),
            reason: AcknowledgementReason::parse("restored a backup").unwrap(),
        });
        assert_eq!(signer.acknowledgements(), 1);
        assert_eq!(signer.adopted(), Some(&point(8)));
    }
}
