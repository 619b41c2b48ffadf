//! The Standard Webhooks headers: `webhook-id` (the event id, the same on
//! every attempt), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//! per signing secret, space-separated (two during a rotation).

use infra::webhooks::SigningSecret;
use standardwebhooks::Webhook;

pub use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP};

/// A stored secret that is not `whsec_` + base64, or a body that is not UTF-8.
#[derive(Debug, thiserror::Error)]
#[error("the delivery cannot be signed")]
pub struct SigningError(#[source] standardwebhooks::WebhookError);

/// The `webhook-signature` value for this message, one signature per secret.
pub fn signature_header(
    secrets: &[SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SigningError> {
    let signatures = secrets
        .iter()
        .map(|secret| {
            Webhook::new(secret.expose())
                .and_then(|signer| signer.sign(id, timestamp, body))
                .map_err(SigningError)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specification_example_signs_as_published() {
        let secrets = [SigningSecret::from(SECRET.to_owned())];
        let header = signature_header(&secrets, ID, TIMESTAMP, BODY.as_bytes()).unwrap();
        assert_eq!(header, SIGNATURE);
    }

    #[test]
    fn during_a_rotation_each_secret_signs_and_either_verifies() {
        let old = SigningSecret::generate();
        let new = SigningSecret::generate();
        let header =
            signature_header(&[new.clone(), old.clone()], ID, TIMESTAMP, BODY.as_bytes()).unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        for (secret, part) in [(&new, parts[0]), (&old, parts[1])] {
            let alone =
                signature_header(std::slice::from_ref(secret), ID, TIMESTAMP, BODY.as_bytes())
                    .unwrap();
            assert_eq!(alone, part);
        }
    }

    #[test]
    fn a_malformed_stored_secret_is_an_error() {
        let bad = [SigningSecret::from("whsec_***".to_owned())];
        assert!(signature_header(&bad, ID, TIMESTAMP, BODY.as_bytes()).is_err());
    }
}
