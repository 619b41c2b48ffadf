/// Why an input value was rejected. Messages do not name the field: the caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must be at least {min} characters")]
    TooShort { min: usize },
    #[error("must be a valid email address")]
    InvalidEmail,
    #[error("must not quote the part before the @")]
    QuotedEmail,
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("must not be a commonly used password")]
    CommonPassword,
    #[error("must not be a repetitive or sequential pattern")]
    RepetitivePassword,
    #[error("must contain only {allowed}")]
    InvalidCharacters { allowed: &'static str },
    #[error("must be {expected}")]
    InvalidFormat { expected: &'static str },
    /// The value is quoted and escaped, and cut to its first
    /// [`ValidationError::MAX_ECHOED_CHARS`] characters.
    #[error("unknown permission {value:?}")]
    UnknownPermission { value: String },
}

impl ValidationError {
    /// How much of a rejected value an error message repeats.
    pub const MAX_ECHOED_CHARS: usize = 64;

    pub(crate) fn unknown_permission(value: &str) -> Self {
        Self::UnknownPermission {
            value: value.chars().take(Self::MAX_ECHOED_CHARS).collect(),
        }
    }
}

/// Rejects empty values and values longer than `max` characters (not bytes).
pub(crate) fn check_length(value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty);
    }
    if value.chars().count() > max {
        return Err(ValidationError::TooLong { max });
    }
    Ok(())
}

/// Serde and `Display` for a newtype over `String` with a `parse` constructor:
/// serialized as the plain string, validated again on deserialize.
macro_rules! string_value {
    ($type:ident) => {
        impl TryFrom<String> for $type {
            type Error = $crate::validation::ValidationError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> Self {
                value.0
            }
        }

        impl ::std::fmt::Display for $type {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub(crate) use string_value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_short_sentences_without_field_names() {
        assert_eq!(
            ValidationError::TooLong { max: 254 }.to_string(),
            "must be at most 254 characters"
        );
        assert_eq!(
            ValidationError::TooShort { min: 12 }.to_string(),
            "must be at least 12 characters"
        );
        assert_eq!(ValidationError::Empty.to_string(), "must not be empty");
    }

    #[test]
    fn unknown_permission_quotes_escapes_and_cuts_the_value() {
        assert_eq!(
            ValidationError::unknown_permission("x").to_string(),
            "unknown permission \"x\""
        );
        assert_eq!(
            ValidationError::unknown_permission("a\nb").to_string(),
            "unknown permission \"a\\nb\""
        );
        let long = "y".repeat(1000);
        assert_eq!(
            ValidationError::unknown_permission(&long),
            ValidationError::UnknownPermission {
                value: "y".repeat(ValidationError::MAX_ECHOED_CHARS)
            }
        );
    }

    #[test]
    fn check_length_counts_characters() {
        assert_eq!(check_length("", 3), Err(ValidationError::Empty));
        assert_eq!(check_length("ééé", 3), Ok(()));
        assert_eq!(
            check_length("abcd", 3),
            Err(ValidationError::TooLong { max: 3 })
        );
    }
}
