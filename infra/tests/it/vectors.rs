//! The test vectors of docs/audit-log-specification.md
//! (docs/audit-log-vectors.json) against `infra::integrity`: every
//! commitment, event hash, running hash, key id and checkpoint signature the
//! document gives is what the implementation computes. If the
//! implementation changes any of them, this fails: change the specification
//! (and its format name) with it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use infra::event_log::LogPosition;
use infra::integrity::{
    check_seal, event_digest, event_hash, key_id, public_key_pem, running_digest, running_hash,
    ChainedEvent, Checkpoint, HashVersion, Json, PublicKeys,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const VECTORS: &str = include_str!("../../../docs/audit-log-vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("the vectors are JSON")
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string"))
}

fn int(value: &Value, key: &str) -> i64 {
    value[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} is an integer"))
}

fn time(value: &Value, key: &str) -> DateTime<Utc> {
    text(value, key).parse().expect("RFC 3339")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn signing_key(vectors: &Value) -> SigningKey {
    let seed: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&text(&vectors["key"], "seed_hex")[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .unwrap()
        .try_into()
        .unwrap();
    SigningKey::from_bytes(&seed)
}

fn chained(event: &Value) -> ChainedEvent<'_> {
    let version = i16::try_from(int(event, "hash_version")).unwrap();
    ChainedEvent {
        version: HashVersion::try_from(version).expect("a known hash version"),
        prev_hash: text(event, "prev_hash"),
        event_id: text(event, "event_id"),
        aggregate_type: text(event, "aggregate_type"),
        aggregate_id: text(event, "aggregate_id"),
        sequence: int(event, "sequence"),
        event_type: text(event, "event_type"),
        event_version: text(event, "event_version"),
        sealed: text(event, "sealed"),
        recorded_at: time(event, "recorded_at"),
    }
}

#[test]
fn the_key_vectors_are_the_implementations() {
    let vectors = vectors();
    let key = &vectors["key"];
    let public = signing_key(&vectors).verifying_key();
    assert_eq!(hex(public.as_bytes()), text(key, "public_key_hex"));
    assert_eq!(
        STANDARD.encode(public.as_bytes()),
        text(key, "public_key_base64")
    );
    assert_eq!(public_key_pem(&public), text(key, "public_key_pem"));
    assert_eq!(key_id(&public), text(key, "key_id"));
    let mut from_base64 = PublicKeys::default();
    from_base64
        .insert_base64(text(key, "public_key_base64"))
        .unwrap();
    assert!(from_base64.get(text(key, "key_id")).is_some());
}

#[test]
fn the_commitment_event_hash_and_running_hash_vectors_are_the_implementations() {
    let vectors = vectors();
    let events = vectors["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    let mut running = String::new();
    let mut previous = String::new();
    let mut versions = Vec::new();
    for event in events {
        let name = format!("event {}", int(event, "sequence"));
        for commitment in event["commitments"].as_array().unwrap() {
            let mut message = text(commitment, "salt").as_bytes().to_vec();
            message.extend_from_slice(text(commitment, "value").as_bytes());
            assert_eq!(
                format!("sha256:{}", hex(&Sha256::digest(&message))),
                text(commitment, "commitment"),
                "{name} {}",
                text(commitment, "path")
            );
        }
        let sealed = Json::parse(text(event, "sealed")).unwrap();
        let stored = json!({"payload": event["payload"], "metadata": event["metadata"]});
        assert_eq!(
            check_seal(
                &Json::from_value(&stored),
                &sealed,
                &Json::from_value(&event["salts"])
            )
            .map(|_| ()),
            Ok(()),
            "{name}"
        );
        assert_eq!(
            time(event, "recorded_at").timestamp_micros(),
            int(event, "recorded_at_micros"),
            "{name}"
        );
        assert_eq!(text(event, "prev_hash"), previous, "{name}");
        let hash = event_hash(&chained(event));
        assert_eq!(hash, text(event, "hash"), "{name}");
        assert_eq!(event_digest(&chained(event)).as_str(), hash, "{name}");
        assert_eq!(
            hex(&Sha256::digest(text(event, "hash_input").as_bytes())),
            hash,
            "{name}: the bytes hashed"
        );
        let position = LogPosition {
            transaction_id: int(event, "transaction_id"),
            global_position: int(event, "global_position"),
        };
        let digest = running_digest(&running, &hash, position);
        running = running_hash(&running, &hash, position);
        assert_eq!(digest.as_str(), running, "{name}");
        assert_eq!(running, text(event, "running_hash"), "{name}");
        previous = hash;
        versions.push(int(event, "hash_version"));
    }
    assert_eq!(versions, [1, 2, 2], "both hash versions have a vector");
}

#[test]
fn the_checkpoint_vector_is_the_implementations() {
    let vectors = vectors();
    let expected = &vectors["checkpoint"];
    let signed = Checkpoint::sign(
        &signing_key(&vectors),
        (
            int(expected, "transaction_id"),
            int(expected, "global_position"),
        ),
        text(expected, "running_hash").to_owned(),
        int(expected, "event_count"),
        time(expected, "created_at"),
    );
    assert_eq!(
        signed.created_at.timestamp_micros(),
        int(expected, "created_at_micros")
    );
    assert_eq!(hex(&signed.message()), text(expected, "message_hex"));
    assert_eq!(signed.key_id, text(expected, "key_id"));
    assert_eq!(signed.signature, text(expected, "signature"));
    let keys = PublicKeys::from_pem(text(&vectors["key"], "public_key_pem")).unwrap();
    assert_eq!(signed.verify(&keys), Ok(()));
    let last = vectors["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(signed.running_hash, text(&last, "running_hash"));
}

#[test]
fn the_export_vector_checks_with_the_implementation() {
    let vectors = vectors();
    let lines: Vec<Value> = vectors["export"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| serde_json::from_str(line.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(lines[0]["export"]["filters"], json!({}));
    let checkpoint: Checkpoint = serde_json::from_value(lines[1]["checkpoint"].clone()).unwrap();
    let keys = PublicKeys::from_pem(text(&vectors["key"], "public_key_pem")).unwrap();
    assert_eq!(checkpoint.verify(&keys), Ok(()));
    let events = &lines[2..lines.len() - 1];
    assert_eq!(lines.last().unwrap()["end"]["events"], events.len());
    for (line, stored) in events.iter().zip(vectors["events"].as_array().unwrap()) {
        let integrity = &line["integrity"];
        let sealed = Json::parse(text(integrity, "sealed")).unwrap();
        let shown = json!({"payload": line["payload"], "metadata": integrity["stored_metadata"]});
        assert_eq!(
            check_seal(
                &Json::from_value(&shown),
                &sealed,
                &Json::from_value(&integrity["salts"])
            )
            .map(|_| ()),
            Ok(()),
            "{line}"
        );
        assert_eq!(text(integrity, "sealed"), text(stored, "sealed"));
        assert_eq!(text(integrity, "hash"), text(stored, "hash"));
    }
}

#[test]
fn the_specifications_table_of_personal_paths_is_the_domains() {
    let specification = include_str!("../../../docs/audit-log-specification.md");
    let in_document: std::collections::BTreeSet<String> = specification
        .lines()
        .filter(|line| line.ends_with("| `[erased]` |"))
        .map(str::to_owned)
        .collect();
    let in_domain: std::collections::BTreeSet<String> = domain::PERSONAL_PAYLOAD_FIELDS
        .iter()
        .map(|field| {
            format!(
                "| `{}` | `/payload/{}/{}` | `[erased]` |",
                field.event_type.name(),
                field.event_type.variant(),
                field.field
            )
        })
        .collect();
    assert_eq!(in_document, in_domain);
}
