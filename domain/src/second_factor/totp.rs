//! TOTP (RFC 6238): HOTP (RFC 4226, HMAC-SHA-1, dynamic truncation) over
//! 30-second time steps, six digits, as every authenticator app computes it
//! by default. A code is accepted for the current step or one step either
//! side (clock skew), and only for a step after the last one accepted, so a
//! code is never accepted twice, not even within its own 30 seconds.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::ValidationError;

/// Seconds per time step (RFC 6238's default, what authenticators assume).
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: u64 = 1;
/// Bytes of a secret: 160 bits, RFC 4226's recommendation for HMAC-SHA-1.
pub const SECRET_BYTES: usize = 20;

/// A factor's shared secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; SECRET_BYTES]);

impl TotpSecret {
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        Self(bytes)
    }

    /// A secret as [`TotpSecret::base32`] writes it (what an authenticator
    /// app is given); `None` for anything else.
    pub fn from_base32(text: &str) -> Option<Self> {
        let bytes = BASE32_NOPAD.decode(text.as_bytes()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    /// Base32 without padding: the `secret` of an `otpauth://` URI and
    /// what a person types into an authenticator by hand.
    pub fn base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    /// The `otpauth://totp/` URI an authenticator app reads (usually from a
    /// QR code): the issuer and the account label, percent-encoded.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let label = format!("{}:{}", encode(issuer), encode(account));
        format!(
            "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            self.base32(),
            encode(issuer)
        )
    }

    /// The code of time step `step`.
    pub fn code_at_step(&self, step: u64) -> TotpCode {
        TotpCode(hotp(&self.0, step, DIGITS))
    }

    /// Which step `code` is right for at `unix_seconds`: the current step
    /// or one either side, the nearest first, and only a step after
    /// `last_used_step`. The caller records the step it gets back as the
    /// last used one.
    pub fn verify(
        &self,
        code: &TotpCode,
        unix_seconds: i64,
        last_used_step: Option<u64>,
    ) -> Result<u64, TotpRejected> {
        let now = step_at(unix_seconds);
        let mut candidates = vec![now];
        for offset in 1..=SKEW_STEPS {
            candidates.push(now.saturating_sub(offset));
            candidates.push(now.saturating_add(offset));
        }
        let matched = candidates
            .into_iter()
            .find(|step| constant_time_eq(self.code_at_step(*step).0, code.0))
            .ok_or(TotpRejected::Wrong)?;
        match last_used_step {
            Some(last) if matched <= last => Err(TotpRejected::Replayed),
            _ => Ok(matched),
        }
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

/// Six digits as typed: spaces are ignored (apps show `123 456`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TotpCode(u32);

impl TotpCode {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let digits: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        let valid = digits.len() == DIGITS as usize && digits.bytes().all(|b| b.is_ascii_digit());
        match valid {
            true => Ok(Self(digits.parse().expect("six ASCII digits"))),
            false => Err(ValidationError::InvalidFormat {
                expected: "six digits",
            }),
        }
    }
}

impl fmt::Display for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.0, width = DIGITS as usize)
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(..)")
    }
}

/// Why a code is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpRejected {
    #[error("the code is wrong")]
    Wrong,
    /// Right, but for a step already used: a replay.
    #[error("the code was already used")]
    Replayed,
}

/// The time step `unix_seconds` falls in (none before the epoch).
pub fn step_at(unix_seconds: i64) -> u64 {
    u64::try_from(unix_seconds.max(0) / STEP_SECONDS).unwrap_or(0)
}

/// RFC 4226 §5.3: HMAC-SHA-1 of the counter, dynamic truncation, `digits` digits.
fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

fn constant_time_eq(a: u32, b: u32) -> bool {
    (a ^ b) == 0
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 secret.
    const RFC_SECRET: &[u8; 20] = b"12345678901234567890";

    #[test]
    fn the_rfc_6238_sha1_vectors() {
        let vectors = [
            (59, 94_287_082),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ];
        for (time, code) in vectors {
            assert_eq!(hotp(RFC_SECRET, step_at(time), 8), code, "T = {time}");
        }
    }

    #[test]
    fn the_rfc_4226_hotp_vectors() {
        let codes = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, code) in codes.into_iter().enumerate() {
            assert_eq!(
                hotp(RFC_SECRET, counter as u64, 6),
                code,
                "counter {counter}"
            );
        }
    }

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(*RFC_SECRET)
    }

    #[test]
    fn a_code_is_right_one_step_either_side_and_not_two() {
        let now = 1_234_567_890;
        let step = step_at(now);
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = secret().code_at_step(step.checked_add_signed(offset).unwrap());
            let verified = secret().verify(&code, now, None);
            assert_eq!(verified.is_ok(), accepted, "offset {offset}");
        }
    }

    #[test]
    fn a_code_is_never_accepted_twice() {
        let now = 1_234_567_890;
        let code = secret().code_at_step(step_at(now));
        let used = secret().verify(&code, now, None).unwrap();
        assert_eq!(used, step_at(now));
        assert_eq!(
            secret().verify(&code, now, Some(used)),
            Err(TotpRejected::Replayed)
        );
        // An older step's code after a newer one was used: a replay too.
        let previous = secret().code_at_step(step_at(now) - 1);
        assert_eq!(
            secret().verify(&previous, now, Some(used)),
            Err(TotpRejected::Replayed)
        );
        let next = secret().code_at_step(step_at(now) + 1);
        assert_eq!(secret().verify(&next, now, Some(used)), Ok(used + 1));
    }

    #[test]
    fn codes_are_six_digits_as_typed() {
        assert_eq!(TotpCode::parse(" 012 345 ").unwrap().to_string(), "012345");
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert!(TotpCode::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            secret().verify(&TotpCode::parse("000000").unwrap(), 59, None),
            Err(TotpRejected::Wrong)
        );
    }

    #[test]
    fn the_uri_names_issuer_account_and_the_base32_secret() {
        assert_eq!(secret().base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            Some(secret())
        );
        assert_eq!(TotpSecret::from_base32("GEZDGNBV"), None);
        assert_eq!(
            secret().otpauth_uri("Identity service", "ada@example.com"),
            "otpauth://totp/Identity%20service:ada%40example.com?\
             secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Identity%20service\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(format!("{:?}", secret()), "TotpSecret(..)");
        assert_eq!(
            format!("{:?}", TotpCode::parse("123456").unwrap()),
            "TotpCode(..)"
        );
    }
}
