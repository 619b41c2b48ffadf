use serde::{Deserialize, Serialize};

use crate::validation::ValidationError;

/// Where a signed checkpoint stands: its position in publishing order, the
/// running hash there and how many events it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPoint {
    pub transaction_id: i64,
    pub global_position: i64,
    pub running_hash: String,
    pub event_count: i64,
}

/// Why the operator acknowledges: 1 to 500 characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AcknowledgementReason(String);

impl AcknowledgementReason {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(reason: &str) -> Result<Self, ValidationError> {
        let trimmed = reason.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_and_neither_blank_nor_too_long() {
        assert_eq!(
            AcknowledgementReason::parse("  restored the backup of 1 May ")
                .unwrap()
                .as_str(),
            "restored the backup of 1 May"
        );
        assert!(AcknowledgementReason::parse(" \n").is_err());
        assert!(AcknowledgementReason::parse(&"x".repeat(501)).is_err());
    }
}
