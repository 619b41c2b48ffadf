//! Refresh tokens: `<session id>.<256 random bits, base64url>`. Only their
//! SHA-256 is stored (in the session's events); the session id in front
//! finds the session without a lookup table.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::RefreshTokenHash;
use infra::integrity::HexDigest;
use uuid::Uuid;

pub struct RefreshToken {
    session_id: Uuid,
    value: String,
}

impl RefreshToken {
    pub fn generate(session_id: Uuid) -> Self {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Self {
            session_id,
            value: format!("{session_id}.{}", URL_SAFE_NO_PAD.encode(secret)),
        }
    }

    /// `None` for anything that is not shaped like a refresh token.
    pub fn parse(value: &str) -> Option<Self> {
        let (session, secret) = value.split_once('.')?;
        let decoded = URL_SAFE_NO_PAD.decode(secret).ok()?;
        (decoded.len() == 32).then_some(())?;
        Some(Self {
            session_id: Uuid::parse_str(session).ok()?,
            value: value.to_owned(),
        })
    }

    pub fn session_id(&self) -> Uuid {
        self.session_id
    }

    pub fn hash(&self) -> RefreshTokenHash {
        RefreshTokenHash::new(HexDigest::of(self.value.as_bytes()).to_string())
    }

    /// The token itself, to hand to the client once.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RefreshToken({}, ..)", self.session_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_to_its_session_and_hash() {
        let token = RefreshToken::generate(Uuid::now_v7());
        let parsed = RefreshToken::parse(token.expose()).unwrap();
        assert_eq!(parsed.session_id(), token.session_id());
        assert_eq!(parsed.hash(), token.hash());
    }

    #[test]
    fn tokens_differ_and_malformed_ones_do_not_parse() {
        let session = Uuid::now_v7();
        assert_ne!(
            RefreshToken::generate(session).hash(),
            RefreshToken::generate(session).hash()
        );
        for bad in [
            "",
            "x",
            "not-a-uuid.abc",
            &format!("{session}.short"),
            &format!("{session}"),
        ] {
            assert!(RefreshToken::parse(bad).is_none(), "{bad}");
        }
    }
}
