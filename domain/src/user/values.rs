use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::{check_length, string_value, ValidationError};

const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// A trimmed, non-empty name of at most 100 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_LEN: usize = 100;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let trimmed = input.trim();
        check_length(trimmed, Self::MAX_LEN)?;
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What an erased person's name reads as.
    pub fn erased() -> Self {
        Self(crate::ERASED.to_owned())
    }
}

/// A plaintext password that passed the strength rules. Never serialized.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 12;
    pub const MAX_LEN: usize = 128;

    /// Not trimmed: whitespace is part of the password.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        check_length(input, Self::MAX_LEN)?;
        if input.chars().count() < Self::MIN_LEN {
            return Err(ValidationError::TooShort { min: Self::MIN_LEN });
        }
        let lower = input.to_lowercase();
        if is_common(&lower) {
            return Err(ValidationError::CommonPassword);
        }
        if is_repetitive(&lower) {
            return Err(ValidationError::RepetitivePassword);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A PHC-format password hash produced by the service.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

/// The cost of one argon2id hash: memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingCost {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

impl PasswordHash {
    const REDACTED: &'static str = crate::REDACTED;

    /// What the service hashes passwords with: OWASP's argon2id
    /// recommendation (19 MiB, 2 passes, 1 lane).
    pub const COST: HashingCost = HashingCost {
        memory_kib: 19 * 1024,
        passes: 2,
        lanes: 1,
    };

    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The marker that replaces a hash in events published outside the service.
    pub fn redacted() -> Self {
        Self(Self::REDACTED.to_owned())
    }

    pub fn is_redacted(&self) -> bool {
        self.0 == Self::REDACTED
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

string_value!(DisplayName);

fn is_common(lowercase: &str) -> bool {
    COMMON_PASSWORDS
        .lines()
        .any(|line| line.trim() == lowercase)
}

fn is_repetitive(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    has_few_distinct(&chars, 3) || repeats_short_unit(&chars, 4) || is_sequential(&chars)
}

fn has_few_distinct(chars: &[char], max: usize) -> bool {
    let mut distinct: Vec<char> = chars.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len() <= max
}

fn repeats_short_unit(chars: &[char], max_unit: usize) -> bool {
    (1..=max_unit).any(|unit| {
        chars.len() > unit
            && chars.len().is_multiple_of(unit)
            && chars.iter().enumerate().all(|(i, c)| *c == chars[i % unit])
    })
}

/// Every step is +1, or every step is -1. Digits and ASCII letters wrap around,
/// so "789012" and "xyzabc" count as runs.
fn is_sequential(chars: &[char]) -> bool {
    let steps_by = |step: i32| chars.windows(2).all(|w| shift(w[0], step) == Some(w[1]));
    chars.len() > 1 && (steps_by(1) || steps_by(-1))
}

fn shift(c: char, step: i32) -> Option<char> {
    match c {
        '0'..='9' => Some(wrap(c, b'0', 10, step)),
        'a'..='z' => Some(wrap(c, b'a', 26, step)),
        _ => u32::from(c)
            .checked_add_signed(step)
            .and_then(char::from_u32),
    }
}

fn wrap(c: char, base: u8, size: u8, step: i32) -> char {
    let offset = (i32::from(c as u8 - base) + step).rem_euclid(i32::from(size));
    char::from(base + offset as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_is_trimmed() {
        let name = DisplayName::parse("  Alice Smith  ").unwrap();
        assert_eq!(name.as_str(), "Alice Smith");
        assert_eq!(name.to_string(), "Alice Smith");
    }

    #[test]
    fn display_name_rejects_empty_and_blank() {
        assert_eq!(DisplayName::parse(""), Err(ValidationError::Empty));
        assert_eq!(DisplayName::parse(" \t "), Err(ValidationError::Empty));
    }

    #[test]
    fn display_name_accepts_one_character() {
        assert!(DisplayName::parse("A").is_ok());
    }

    #[test]
    fn display_name_counts_characters_not_bytes() {
        let name = "é".repeat(100);
        assert!(name.len() > 100);
        assert!(DisplayName::parse(&name).is_ok());
    }

    #[test]
    fn display_name_accepts_100_and_rejects_101_characters() {
        assert!(DisplayName::parse(&"a".repeat(100)).is_ok());
        assert_eq!(
            DisplayName::parse(&"a".repeat(101)),
            Err(ValidationError::TooLong { max: 100 })
        );
    }

    #[test]
    fn display_name_rejects_control_characters() {
        for input in ["Alice\nSmith", "Alice\u{0}", "Al\u{7f}ice", "Ali\u{9b}ce"] {
            assert_eq!(
                DisplayName::parse(input),
                Err(ValidationError::ControlCharacters),
                "{input:?}"
            );
        }
    }

    #[test]
    fn display_name_serde_validates() {
        let name = DisplayName::parse("Alice").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"Alice\"");
        assert_eq!(
            serde_json::from_str::<DisplayName>("\"Alice\"").unwrap(),
            name
        );
        assert!(serde_json::from_str::<DisplayName>("\"\"").is_err());
    }

    /// 12+ characters, not common, not repetitive: the base for length tests.
    fn good_password_of_len(len: usize) -> String {
        "Tr0ub4dor&3-horse-battery-staple!"
            .chars()
            .cycle()
            .take(len)
            .collect()
    }

    #[test]
    fn password_accepts_a_good_password() {
        let password = Password::parse("violet kettle orbit 42").unwrap();
        assert_eq!(password.expose(), "violet kettle orbit 42");
    }

    #[test]
    fn password_is_not_trimmed() {
        let password = Password::parse("  Tr0ub4dor&3x  ").unwrap();
        assert_eq!(password.expose(), "  Tr0ub4dor&3x  ");
    }

    #[test]
    fn password_rejects_empty() {
        assert_eq!(Password::parse("").err(), Some(ValidationError::Empty));
    }

    #[test]
    fn password_rejects_11_and_accepts_12_characters() {
        assert_eq!(
            Password::parse(&good_password_of_len(11)).err(),
            Some(ValidationError::TooShort { min: 12 })
        );
        assert!(Password::parse(&good_password_of_len(12)).is_ok());
    }

    #[test]
    fn password_accepts_128_and_rejects_129_characters() {
        assert!(Password::parse(&good_password_of_len(128)).is_ok());
        assert_eq!(
            Password::parse(&good_password_of_len(129)).err(),
            Some(ValidationError::TooLong { max: 128 })
        );
    }

    #[test]
    fn password_counts_characters_not_bytes() {
        let password = good_password_of_len(120) + "éàüöçñøå";
        assert_eq!(password.chars().count(), 128);
        assert!(password.len() > 128);
        assert!(Password::parse(&password).is_ok());
    }

    #[test]
    fn password_rejects_common_passwords_in_any_case() {
        for input in [
            "password1234",
            "123456789012",
            "qwertyuiop123",
            "iloveyou1234",
            "passwordpassword",
            "PassWord1234",
            "QWERTYUIOP123",
        ] {
            assert_eq!(
                Password::parse(input).err(),
                Some(ValidationError::CommonPassword),
                "{input}"
            );
        }
    }

    #[test]
    fn common_password_list_is_lowercase_and_large_enough() {
        let entries: Vec<&str> = COMMON_PASSWORDS.lines().map(str::trim).collect();
        assert!(entries.len() >= 200);
        assert!(entries
            .iter()
            .all(|e| !e.is_empty() && *e == e.to_lowercase()));
    }

    #[test]
    fn password_rejects_few_distinct_characters() {
        for input in [
            "aaaaaaaaaaaa",
            "abababababab",
            "abcabcabcaab",
            "zzzzzzzzzzzzzzzy",
        ] {
            assert_eq!(
                Password::parse(input).err(),
                Some(ValidationError::RepetitivePassword),
                "{input}"
            );
        }
    }

    #[test]
    fn password_rejects_a_repeated_short_unit() {
        for input in ["wxyzwxyzwxyz", "k9$Lk9$Lk9$Lk9$L", "1a2b1a2b1a2b"] {
            assert_eq!(
                Password::parse(input).err(),
                Some(ValidationError::RepetitivePassword),
                "{input}"
            );
        }
    }

    #[test]
    fn password_accepts_a_repeated_longer_unit() {
        assert!(Password::parse("k9$Lmk9$Lmk9$Lm").is_ok());
    }

    #[test]
    fn password_rejects_ascending_runs() {
        for input in [
            "abcdefghijklm",
            "234567890123",
            "ABCDEFGHIJKL",
            "uvwxyzabcdef",
        ] {
            assert_eq!(
                Password::parse(input).err(),
                Some(ValidationError::RepetitivePassword),
                "{input}"
            );
        }
    }

    #[test]
    fn password_rejects_descending_runs() {
        for input in ["987654321098", "zyxwvutsrqpo", "cbazyxwvutsr"] {
            assert_eq!(
                Password::parse(input).err(),
                Some(ValidationError::RepetitivePassword),
                "{input}"
            );
        }
    }

    #[test]
    fn password_accepts_a_run_that_breaks_once() {
        assert!(Password::parse("abcdefghijkz").is_ok());
    }

    #[test]
    fn password_debug_is_redacted() {
        let password = Password::parse("violet kettle orbit 42").unwrap();
        assert_eq!(format!("{password:?}"), "Password(***)");
    }

    #[test]
    fn password_hash_keeps_its_value_but_redacts_debug() {
        let hash = PasswordHash::new("$argon2id$v=19$secret".into());
        assert_eq!(hash.as_str(), "$argon2id$v=19$secret");
        assert_eq!(format!("{hash:?}"), "PasswordHash(***)");
        assert!(!hash.is_redacted());
    }

    #[test]
    fn password_hash_redacted_marker() {
        let hash = PasswordHash::redacted();
        assert_eq!(hash.as_str(), "[redacted]");
        assert!(hash.is_redacted());
    }

    #[test]
    fn password_hash_serializes_transparently() {
        let hash = PasswordHash::new("$argon2id$x".into());
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, "\"$argon2id$x\"");
        assert_eq!(serde_json::from_str::<PasswordHash>(&json).unwrap(), hash);
    }
}
