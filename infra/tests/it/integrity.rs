//! The integrity trigger against the Rust verifier: what the database
//! computes at insert is what `infra::integrity` recomputes.

use infra::integrity::{check_seal, HashVersion, HashedEvent, Json};
use infra::testing::{request_metadata, seed_renamed_users, TestDatabase};
use serde_json::{json, Value};

#[derive(sqlx::FromRow)]
struct Sealed {
    #[sqlx(flatten)]
    event: HashedEvent,
    payload: Value,
    metadata: Value,
    salts: Value,
}

async fn stored(db: &TestDatabase) -> Vec<Sealed> {
    sqlx::query_as(
        "SELECT event_id::text AS event_id, hash_version, aggregate_type, aggregate_id, sequence, \
                event_type, event_version, recorded_at, payload, metadata, sealed::text AS sealed, salts, prev_hash, hash \
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_trigger_seals_and_chains_what_the_verifier_recomputes() {
    let db = TestDatabase::create().await;
    let mut tx = db.pool.begin().await.unwrap();
    let metadata = request_metadata(None, "Mozilla/5.0 (X11; «ünïcode»)");
    seed_renamed_users(&mut tx, 3, 2, &metadata).await.unwrap();
    tx.commit().await.unwrap();

    let events = stored(&db).await;
    assert_eq!(events.len(), 9);
    let mut previous: Option<&HashedEvent> = None;
    for row in &events {
        let event = &row.event;
        assert_eq!(event.hash_version, i16::from(HashVersion::CURRENT));
        assert_eq!(
            event.check_hash(),
            Ok(()),
            "event {} {}",
            event.aggregate_id,
            event.sequence
        );
        let sealed = Json::parse(&event.sealed).unwrap();
        let visible = json!({"payload": row.payload, "metadata": row.metadata});
        let (visible, salts) = (Json::from_value(&visible), Json::from_value(&row.salts));
        assert_eq!(check_seal(&visible, &sealed, &salts), Ok(Vec::new()));
        let same_stream = previous.filter(|p| p.aggregate_id == event.aggregate_id);
        match same_stream {
            Some(before) => assert_eq!(event.prev_hash, before.hash),
            None => assert_eq!((event.sequence, event.prev_hash.as_str()), (1, "")),
        }
        assert!(
            !event.sealed.contains("Mozilla") && !event.sealed.contains("example.com"),
            "plaintext in the sealed form: {}",
            event.sealed
        );
        previous = Some(event);
    }
}

#[tokio::test]
async fn an_event_that_does_not_follow_its_stream_is_refused() {
    let db = TestDatabase::create().await;
    let refused = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) VALUES ('user', 'nobody', 2, 'x', '1', '{}', '{}')",
    )
    .execute(&db.pool)
    .await;
    assert!(refused.is_err(), "an event 2 without an event 1 was stored");
}
