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
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("must not be a commonly used password")]
    CommonPassword,
    #[error("must not be a repetitive or sequential pattern")]
    RepetitivePassword,
}

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
}
