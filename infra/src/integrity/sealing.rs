//! Sealing an event as it is appended: every string leaf of its payload and
//! metadata replaced by a salted commitment, written as PostgreSQL writes
//! `jsonb` text, so that a row sealed here is byte for byte what the
//! database's own `seal_event` trigger writes for a row inserted unsealed
//! (the specification, section 2.1, describes both).

use serde_json::Value;
use uuid::Uuid;

use super::seal::COMMITMENT_PREFIX;
use super::sha256_hex;

/// An event's sealed form (`events.sealed`, exact text) and its salts
/// (`events.salts`), both of the shape `{"payload": …, "metadata": …}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub sealed: String,
    pub salts: Value,
}

/// Seals `payload` and `metadata` with fresh salts (version 4 UUIDs as 32
/// lowercase hex digits, as the trigger draws them).
pub fn seal_event(payload: &Value, metadata: &Value) -> Sealed {
    seal_event_with(payload, metadata, &mut || {
        Uuid::new_v4().simple().to_string()
    })
}

/// [`seal_event`] with the salts `next_salt` gives, leaf by leaf in the
/// order the sealed text lists them (payload first).
pub fn seal_event_with(
    payload: &Value,
    metadata: &Value,
    next_salt: &mut dyn FnMut() -> String,
) -> Sealed {
    let (payload_sealed, payload_salts) = seal_value(payload, next_salt);
    let (metadata_sealed, metadata_salts) = seal_value(metadata, next_salt);
    let mut sealed = String::with_capacity(256);
    write_jsonb_text(
        &Value::Object(serde_json::Map::from_iter([
            ("payload".to_owned(), payload_sealed),
            ("metadata".to_owned(), metadata_sealed),
        ])),
        &mut sealed,
    );
    let salts = serde_json::json!({ "payload": payload_salts, "metadata": metadata_salts });
    Sealed { sealed, salts }
}

/// One subtree's commitments and salts (`seal_value` in the migration).
fn seal_value(value: &Value, next_salt: &mut dyn FnMut() -> String) -> (Value, Value) {
    match value {
        Value::String(leaf) => {
            let salt = next_salt();
            let commitment = commitment(&salt, leaf);
            (Value::String(commitment), Value::String(salt))
        }
        Value::Object(fields) => {
            let mut sealed = serde_json::Map::with_capacity(fields.len());
            let mut salts = serde_json::Map::with_capacity(fields.len());
            for (key, field) in jsonb_order(fields) {
                let (field_sealed, field_salts) = seal_value(field, next_salt);
                sealed.insert(key.clone(), field_sealed);
                salts.insert(key.clone(), field_salts);
            }
            (Value::Object(sealed), Value::Object(salts))
        }
        Value::Array(items) => {
            let (sealed, salts) = items.iter().map(|item| seal_value(item, next_salt)).unzip();
            (Value::Array(sealed), Value::Array(salts))
        }
        other => (other.clone(), Value::Null),
    }
}

/// `"sha256:" + hex(SHA-256(salt ‖ value))`.
pub fn commitment(salt: &str, value: &str) -> String {
    let mut message = Vec::with_capacity(salt.len() + value.len());
    message.extend_from_slice(salt.as_bytes());
    message.extend_from_slice(value.as_bytes());
    let mut commitment = String::with_capacity(COMMITMENT_PREFIX.len() + 64);
    commitment.push_str(COMMITMENT_PREFIX);
    commitment.push_str(&sha256_hex(&message));
    commitment
}

/// An object's fields in the order `jsonb` keeps them: shorter keys first,
/// then by bytes.
fn jsonb_order(fields: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut ordered: Vec<_> = fields.iter().collect();
    ordered.sort_by(|(a, _), (b, _)| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
    ordered
}

/// `value` as PostgreSQL prints a `jsonb`: keys in [`jsonb_order`], `": "`
/// and `", "` between parts, strings escaped as `escape_json` does (which
/// is what serde_json does too). Numbers are printed as given: the events'
/// payloads hold integers only, which both print alike.
pub fn write_jsonb_text(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            out.push('{');
            for (index, (key, field)) in jsonb_order(fields).into_iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_string(key, out);
                out.push_str(": ");
                write_jsonb_text(field, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_jsonb_text(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_string(text, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(text: &str, out: &mut String) {
    out.push_str(&Value::String(text.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::integrity::{check_seal, Json};

    fn counting_salts() -> impl FnMut() -> String {
        let mut next = 0;
        move || {
            next += 1;
            format!("{next:032x}")
        }
    }

    #[test]
    fn jsonb_text_orders_keys_by_length_then_bytes() {
        let mut text = String::new();
        write_jsonb_text(
            &json!({"bb": 1, "a": [true, null, "x"], "ab": {}, "c\"d": "é\n"}),
            &mut text,
        );
        assert_eq!(
            text,
            r#"{"a": [true, null, "x"], "ab": {}, "bb": 1, "c\"d": "é\n"}"#
        );
    }

    #[test]
    fn every_string_leaf_is_committed_with_its_own_salt() {
        let payload = json!({"Registered": {"email": "a@example.com", "failures": 3}});
        let metadata = json!({"actor_id": "42"});
        let sealed = seal_event_with(&payload, &metadata, &mut counting_salts());
        let first = format!("{:032x}", 1);
        let second = format!("{:032x}", 2);
        assert_eq!(
            sealed.sealed,
            format!(
                r#"{{"payload": {{"Registered": {{"email": "{}", "failures": 3}}}}, "metadata": {{"actor_id": "{}"}}}}"#,
                commitment(&first, "a@example.com"),
                commitment(&second, "42"),
            )
        );
        assert_eq!(
            sealed.salts,
            json!({"payload": {"Registered": {"email": first, "failures": null}},
                   "metadata": {"actor_id": second}})
        );
    }

    #[test]
    fn what_is_sealed_checks_against_its_seal() {
        let payload = json!({"Renamed": {"names": ["a", "b"], "at": "now"}});
        let metadata = json!({"request_ip": "203.0.113.7"});
        let sealed = seal_event(&payload, &metadata);
        let parsed = Json::parse(&sealed.sealed).unwrap();
        let visible = json!({"payload": payload, "metadata": metadata});
        let (visible, salts) = (Json::from_value(&visible), Json::from_value(&sealed.salts));
        assert_eq!(check_seal(&visible, &parsed, &salts), Ok(vec![]));
    }

    #[test]
    fn salts_are_version_4_uuids_in_hex() {
        let sealed = seal_event(&json!("Unit"), &json!({}));
        let salt = sealed.salts["payload"].as_str().unwrap();
        assert_eq!(salt.len(), 32);
        assert_eq!(&salt[12..13], "4");
        assert!(salt
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase()));
    }
}
