use std::fmt;

use email_address::{EmailAddress, Options};
use icu_casemap::CaseMapper;
use idna::AsciiDenyList;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::validation::{check_length, ValidationError};

/// An email address as the user typed it (trimmed, domain lowercased), and
/// its canonical form: one mailbox, one key, whatever way it is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email {
    address: String,
    key: String,
}

impl Email {
    pub const MAX_LEN: usize = 254;

    /// A new address: real syntax, a dotted domain that UTS #46 accepts, no
    /// quoted local part (`"a"@x.com` is the mailbox `a@x.com` written another way).
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let (local, domain) = split(input)?;
        if local.contains('"') {
            return Err(ValidationError::QuotedEmail);
        }
        let key = canonical_key(local, domain)?;
        Ok(Self::new(local, domain, key))
    }

    /// An address that may already be registered: one an event stored, or
    /// one to look an account up by (login, the email filter). The rules
    /// addresses were registered under still apply, and they accepted
    /// quoted local parts (the key is that of the quoted mailbox) and
    /// domains UTS #46 refuses (the key is the whole address lowercased).
    pub fn parse_existing(input: &str) -> Result<Self, ValidationError> {
        let (local, domain) = split(input)?;
        let key = canonical_key(&unquoted(local), domain)
            .unwrap_or_else(|_| format!("{local}@{domain}").to_lowercase());
        Ok(Self::new(local, domain, key))
    }

    fn new(local: &str, domain: &str, key: String) -> Self {
        Self {
            address: format!("{local}@{}", domain.to_lowercase()),
            key,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// What an erased person's address reads as: [`crate::ERASED`], its
    /// own key too, which no address's canonical form can equal.
    pub fn erased() -> Self {
        Self {
            address: crate::ERASED.to_owned(),
            key: crate::ERASED.to_owned(),
        }
    }

    pub fn is_erased(&self) -> bool {
        self.address == crate::ERASED
    }

    /// The canonical form: the local part NFKC-normalized and case-folded,
    /// the domain per UTS #46 in ASCII. Two addresses with the same key are
    /// one mailbox, so one account; every claim and lookup uses this key.
    pub fn uniqueness_key(&self) -> String {
        self.key.clone()
    }

    /// The key before the canonical form: the whole address lowercased.
    /// Only accounts that collided when the canonical form came in still
    /// hold a claim under it (see `app::claims`).
    pub fn legacy_key(&self) -> String {
        self.address.to_lowercase()
    }
}

/// Trims `input` and splits it into local part and domain if it is an
/// address with a dotted domain.
fn split(input: &str) -> Result<(&str, &str), ValidationError> {
    let trimmed = input.trim();
    check_length(trimmed, Email::MAX_LEN)?;
    if !is_address(trimmed) {
        return Err(ValidationError::InvalidEmail);
    }
    // Split on the last '@': a quoted local part may itself contain one.
    trimmed
        .rsplit_once('@')
        .filter(|(_, domain)| domain.contains('.'))
        .ok_or(ValidationError::InvalidEmail)
}

fn is_address(address: &str) -> bool {
    let options = Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    EmailAddress::parse_with_options(address, options).is_ok()
}

fn canonical_key(local: &str, domain: &str) -> Result<String, ValidationError> {
    let domain = idna::domain_to_ascii_cow(domain.as_bytes(), AsciiDenyList::STD3)
        .map_err(|_| ValidationError::InvalidEmail)?;
    let key = format!("{}@{domain}", fold(local));
    // Compatibility forms can turn into syntax ('＠' into '@', '．' into
    // '.'): the key must itself be a plain address.
    let plain = key.matches('@').count() == 1 && !key.contains('"');
    if plain && is_address(&key) {
        Ok(key)
    } else {
        Err(ValidationError::InvalidEmail)
    }
}

/// NFKC, full case folding, NFKC again: folding can leave a string that is
/// not NFKC, and the key must not change when computed from itself.
fn fold(local: &str) -> String {
    let normalized: String = local.nfkc().collect();
    CaseMapper::new().fold_string(&normalized).nfkc().collect()
}

/// The content of a quoted local part, its escapes resolved.
fn unquoted(local: &str) -> String {
    let Some(inner) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return local.to_owned();
    };
    let mut content = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        content.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    content
}

impl TryFrom<String> for Email {
    type Error = ValidationError;

    /// A stored address, or the marker an erasure left in its place.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value == crate::ERASED {
            return Ok(Self::erased());
        }
        Self::parse_existing(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.address
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid address of exactly `len` characters (len >= 12).
    fn email_of_len(len: usize) -> String {
        let local = "a".repeat(64);
        let domain_len = len - local.len() - 1;
        // Labels of at most 63 characters, separated by dots, ending in ".com".
        let mut domain = String::new();
        while domain_len - domain.len() > 4 + 64 {
            domain.push_str(&"b".repeat(63));
            domain.push('.');
        }
        domain.push_str(&"c".repeat(domain_len - domain.len() - 4));
        domain.push_str(".com");
        format!("{local}@{domain}")
    }

    #[test]
    fn email_is_trimmed_and_its_domain_lowercased() {
        let email = Email::parse("  Alice.Smith@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "Alice.Smith@example.com");
        assert_eq!(email.to_string(), "Alice.Smith@example.com");
    }

    #[test]
    fn email_uniqueness_key_lowercases_the_whole_address() {
        let email = Email::parse("Alice.Smith@Example.COM").unwrap();
        assert_eq!(email.uniqueness_key(), "alice.smith@example.com");
    }

    #[test]
    fn email_rejects_empty_and_blank() {
        assert_eq!(Email::parse(""), Err(ValidationError::Empty));
        assert_eq!(Email::parse("   "), Err(ValidationError::Empty));
    }

    #[test]
    fn email_accepts_254_characters() {
        let address = email_of_len(254);
        assert_eq!(address.len(), 254);
        assert_eq!(Email::parse(&address).unwrap().as_str(), address);
    }

    #[test]
    fn email_rejects_255_characters() {
        let address = email_of_len(255);
        assert_eq!(address.len(), 255);
        assert_eq!(
            Email::parse(&address),
            Err(ValidationError::TooLong { max: 254 })
        );
    }

    #[test]
    fn email_rejects_invalid_syntax() {
        for input in [
            "plainaddress",
            "@example.com",
            "alice@",
            "alice@@example.com",
            "alice smith@example.com",
            "alice@example",
            "alice@localhost",
            "alice@[127.0.0.1]",
            "alice@.example.com",
            "alice@example..com",
            "alice@example.com.",
            "ali\nce@example.com",
            "Alice <alice@example.com>",
            "<alice@example.com>",
        ] {
            assert_eq!(
                Email::parse(input),
                Err(ValidationError::InvalidEmail),
                "{input}"
            );
        }
    }

    #[test]
    fn email_accepts_common_forms() {
        for input in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "x_y-z@example.io",
        ] {
            assert!(Email::parse(input).is_ok(), "{input}");
        }
    }

    #[test]
    fn email_serializes_as_plain_string_and_validates_on_deserialize() {
        let email = Email::parse("alice@example.com").unwrap();
        let json = serde_json::to_string(&email).unwrap();
        assert_eq!(json, "\"alice@example.com\"");
        assert_eq!(serde_json::from_str::<Email>(&json).unwrap(), email);
        assert!(serde_json::from_str::<Email>("\"not-an-email\"").is_err());
    }

    /// Each way of writing `sec-lk4@example.com`'s mailbox, or the
    /// reason it is refused: no variant is a second account.
    #[test]
    fn every_way_of_writing_one_mailbox_has_one_key_or_is_refused() {
        let key = |key: &str| Ok(key.to_owned());
        let refused = Err;
        for (input, expected) in [
            ("sec-lk4@example.com", key("sec-lk4@example.com")),
            ("SEC-LK4@Example.COM", key("sec-lk4@example.com")),
            ("  sec-lk4@example.com\t", key("sec-lk4@example.com")),
            ("sec-lk4@ｅｘａｍｐｌｅ.com", key("sec-lk4@example.com")),
            ("sec-lk4@ＥＸＡＭＰＬＥ.com", key("sec-lk4@example.com")),
            (
                "\"sec-lk4\"@example.com",
                refused(ValidationError::QuotedEmail),
            ),
            (
                "\"SEC-LK4\"@example.com",
                refused(ValidationError::QuotedEmail),
            ),
            // The same domain in Unicode and in ASCII (Punycode).
            ("sec-lk4@exämple.com", key("sec-lk4@xn--exmple-cua.com")),
            ("sec-lk4@EXÄMPLE.com", key("sec-lk4@xn--exmple-cua.com")),
            (
                "sec-lk4@xn--exmple-cua.com",
                key("sec-lk4@xn--exmple-cua.com"),
            ),
            (
                "sec-lk4@XN--EXMPLE-CUA.COM",
                key("sec-lk4@xn--exmple-cua.com"),
            ),
            // Syntax the address rules never accepted, canonical or not.
            (
                "ｓｅｃ－ｌｋ４@example.com",
                refused(ValidationError::InvalidEmail),
            ),
            (
                "sec-lk4@exa\u{308}mple.com",
                refused(ValidationError::InvalidEmail),
            ),
            (
                "sec-lk4@example．com",
                refused(ValidationError::InvalidEmail),
            ),
        ] {
            assert_eq!(
                Email::parse(input).map(|email| email.uniqueness_key()),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn the_local_part_is_normalized_and_case_folded() {
        for (input, key) in [
            ("Straße@example.com", "strasse@example.com"),
            ("STRASSE@example.com", "strasse@example.com"),
            ("ﬁle@example.com", "file@example.com"),
            ("\u{212A}elvin@example.com", "kelvin@example.com"),
            ("JOSÉ@example.com", "josé@example.com"),
            ("ΣΑΣ@example.gr", "σασ@example.gr"),
        ] {
            assert_eq!(
                Email::parse(input).map(|email| email.uniqueness_key()),
                Ok(key.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn the_key_of_a_key_is_itself() {
        for input in [
            "Straße@ÉXAMPLE.com",
            "ǅemal@example.com",
            "ΣΑΣ@example.gr",
            "sec-lk4@ｅｘａｍｐｌｅ.com",
        ] {
            let key = Email::parse(input).unwrap().uniqueness_key();
            assert_eq!(Email::parse(&key).unwrap().uniqueness_key(), key, "{input}");
        }
    }

    #[test]
    fn a_quoted_local_part_is_refused() {
        for input in [
            "\"sec-lk4\"@example.com",
            "\"sec lk4\"@example.com",
            "\"a@b\"@example.com",
        ] {
            assert_eq!(
                Email::parse(input),
                Err(ValidationError::QuotedEmail),
                "{input}"
            );
        }
    }

    #[test]
    fn an_address_whose_canonical_form_is_not_an_address_is_refused() {
        for input in [
            "a＠b@example.com",
            "sec-lk4@exa_mple.com",
            "sec-lk4@xn--zz.com",
        ] {
            assert_eq!(
                Email::parse(input),
                Err(ValidationError::InvalidEmail),
                "{input}"
            );
        }
    }

    #[test]
    fn the_typed_address_is_kept() {
        let email = Email::parse("Sec-LK4@ｅｘａｍｐｌｅ.com").unwrap();
        assert_eq!(email.as_str(), "Sec-LK4@ｅｘａｍｐｌｅ.com");
        assert_eq!(email.uniqueness_key(), "sec-lk4@example.com");
        assert_eq!(email.legacy_key(), "sec-lk4@ｅｘａｍｐｌｅ.com");
    }

    /// Lookups (login, the email filter) take the old rules: a quoted
    /// mailbox finds the account of the mailbox it quotes.
    #[test]
    fn an_existing_address_keys_as_its_mailbox_however_it_is_written() {
        for input in [
            "sec-lk4@example.com",
            "\"sec-lk4\"@example.com",
            "\"SEC-LK4\"@ｅｘａｍｐｌｅ.com",
            "sec-lk4@ＥＸＡＭＰＬＥ.com",
        ] {
            assert_eq!(
                Email::parse_existing(input).map(|email| email.uniqueness_key()),
                Ok("sec-lk4@example.com".to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn a_stored_quoted_address_still_loads_and_keys_as_its_mailbox() {
        let email: Email = serde_json::from_str("\"\\\"Sec-LK4\\\"@example.com\"").unwrap();
        assert_eq!(email.as_str(), "\"Sec-LK4\"@example.com");
        assert_eq!(email.uniqueness_key(), "sec-lk4@example.com");
        let spaced: Email = serde_json::from_str("\"\\\"a b\\\"@example.com\"").unwrap();
        assert_eq!(spaced.uniqueness_key(), "\"a b\"@example.com");
    }
}
