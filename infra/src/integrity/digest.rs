//! The two ways every hashed or signed message is built: `f(x)` fields
//! (the byte length of `x` in decimal, `:`, then `x`), so no two messages
//! with different fields share bytes, and lowercase hex of SHA-256. The
//! verifiers hash millions of fields: nothing here allocates but the
//! [`String`] of [`sha256_hex`].

use std::fmt;

use sha2::{Digest, Sha256};

const HEX: &[u8; 16] = b"0123456789abcdef";
/// Enough digits for any `u64`, or a `-` and the digits of any `i64`.
const DECIMAL_DIGITS: usize = 20;

/// Writes `f(field)` in pieces to `write`.
fn write_field(mut write: impl FnMut(&[u8]), field: &[u8]) {
    write(Decimal::unsigned(field.len() as u64).as_bytes());
    write(b":");
    write(field);
}

/// `f(field)` appended to `message`.
pub(crate) fn push_field(message: &mut Vec<u8>, field: &str) {
    write_field(|bytes| message.extend_from_slice(bytes), field.as_bytes());
}

/// Lowercase hex of SHA-256 over `message`.
pub(crate) fn sha256_hex(message: &[u8]) -> String {
    HexDigest::of(message).to_string()
}

/// A message of `f(x)` fields after a domain, hashed as it is written.
pub(crate) struct FieldHasher(Sha256);

impl FieldHasher {
    pub(crate) fn new(domain: &str) -> Self {
        Self(Sha256::new_with_prefix(domain.as_bytes()))
    }

    pub(crate) fn field(&mut self, field: &str) {
        write_field(|bytes| self.0.update(bytes), field.as_bytes());
    }

    /// `f` of the number in decimal.
    pub(crate) fn number(&mut self, value: i64) {
        write_field(
            |bytes| self.0.update(bytes),
            Decimal::signed(value).as_bytes(),
        );
    }

    pub(crate) fn finish(self) -> HexDigest {
        HexDigest::from_bytes(&self.0.finalize().into())
    }
}

/// Lowercase hex of a SHA-256 digest, held inline: what every hash and
/// commitment of the log is written as.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexDigest([u8; 64]);

impl HexDigest {
    /// Of SHA-256 over the concatenation of `parts`.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Self::from_bytes(&hasher.finalize().into())
    }

    pub fn of(message: &[u8]) -> Self {
        Self::of_parts(&[message])
    }

    fn from_bytes(digest: &[u8; 32]) -> Self {
        let mut hex = [0; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl PartialEq<str> for HexDigest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Display for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<HexDigest> for String {
    fn from(digest: HexDigest) -> Self {
        digest.as_str().to_owned()
    }
}

/// A number in decimal, as `to_string` writes it, on the stack.
struct Decimal {
    digits: [u8; DECIMAL_DIGITS],
    start: usize,
}

impl Decimal {
    fn unsigned(mut value: u64) -> Self {
        let mut decimal = Self {
            digits: [0; DECIMAL_DIGITS],
            start: DECIMAL_DIGITS,
        };
        loop {
            decimal.start -= 1;
            decimal.digits[decimal.start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                return decimal;
            }
        }
    }

    fn signed(value: i64) -> Self {
        let mut decimal = Self::unsigned(value.unsigned_abs());
        if value < 0 {
            decimal.start -= 1;
            decimal.digits[decimal.start] = b'-';
        }
        decimal
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_what_to_string_writes() {
        for value in [0, 7, -7, 10, 1_764_000_000_123_456, i64::MAX, i64::MIN] {
            assert_eq!(
                Decimal::signed(value).as_bytes(),
                value.to_string().as_bytes()
            );
        }
        assert_eq!(
            Decimal::unsigned(u64::MAX).as_bytes(),
            u64::MAX.to_string().as_bytes()
        );
    }

    #[test]
    fn fields_are_length_prefixed() {
        let mut message = b"d".to_vec();
        push_field(&mut message, "");
        push_field(&mut message, "«ü»");
        assert_eq!(message, "d0:6:«ü»".as_bytes());
    }

    #[test]
    fn the_hasher_hashes_the_message_the_fields_write() {
        let mut hasher = FieldHasher::new("domain/1");
        hasher.field("abc");
        hasher.number(-42);
        assert_eq!(hasher.finish().as_str(), sha256_hex(b"domain/13:abc3:-42"));
    }

    #[test]
    fn the_hex_is_lowercase_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(HexDigest::of_parts(&[b"a", b"bc"]), HexDigest::of(b"abc"));
        assert!(HexDigest::of(b"abc") == *sha256_hex(b"abc").as_str());
    }
}
