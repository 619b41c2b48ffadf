//! Recovery codes: ten one-time codes shown once, each 80 random bits as
//! 16 lowercase base32 characters in groups of four (`abcd-efgh-ijkl-mnop`).
//! Only their SHA-256 is kept: 80 bits are beyond guessing from a digest,
//! as an API key's 256 are.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use data_encoding::BASE32_NOPAD;
use infra::integrity::HexDigest;

/// Codes in a set.
pub const CODES_PER_SET: usize = 10;
const CODE_BYTES: usize = 10;
const CODE_CHARS: usize = 16;

#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    pub fn generate() -> Self {
        let mut bytes = [0u8; CODE_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(BASE32_NOPAD.encode(&bytes).to_lowercase())
    }

    /// A fresh set.
    pub fn generate_set() -> Vec<Self> {
        (0..CODES_PER_SET).map(|_| Self::generate()).collect()
    }

    /// As typed: hyphens and spaces ignored, any case; `None` if it cannot
    /// be a code.
    pub fn parse(input: &str) -> Option<Self> {
        let code: String = input
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .collect::<String>()
            .to_lowercase();
        let valid = code.len() == CODE_CHARS
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        valid.then_some(Self(code))
    }

    /// The lowercase hex SHA-256 of the code: what is stored.
    pub fn digest(&self) -> String {
        HexDigest::of(self.0.as_bytes()).to_string()
    }

    /// The code in groups of four, to show once.
    pub fn display(&self) -> String {
        self.0
            .as_bytes()
            .chunks(4)
            .map(|chunk| std::str::from_utf8(chunk).expect("ASCII"))
            .collect::<Vec<_>>()
            .join("-")
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_reads_back_however_it_is_typed() {
        let code = RecoveryCode::generate();
        let shown = code.display();
        assert_eq!(shown.len(), 19);
        for typed in [shown.clone(), shown.to_uppercase(), shown.replace('-', " ")] {
            assert_eq!(RecoveryCode::parse(&typed).unwrap().digest(), code.digest());
        }
        for bad in ["", "abcd", &format!("{shown}x"), "abcd-efgh-ijkl-mn01"] {
            assert!(RecoveryCode::parse(bad).is_none(), "{bad}");
        }
        let set = RecoveryCode::generate_set();
        assert_eq!(set.len(), CODES_PER_SET);
        assert_ne!(set[0].digest(), set[1].digest());
        assert_eq!(format!("{code:?}"), "RecoveryCode(..)");
    }
}
