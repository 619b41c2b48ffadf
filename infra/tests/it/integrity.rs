//! The integrity trigger and the appender against the Rust verifier: what
//! either computes at insert is what `infra::integrity` recomputes.

use domain::{ContractEvent, UserEvent};
use infra::event_stream::{self, NewEvent, StreamHead};
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

fn renamed(name: &str) -> NewEvent {
    NewEvent {
        event_type: UserEvent::DISPLAY_NAME_CHANGED.name().into(),
        event_version: UserEvent::DISPLAY_NAME_CHANGED.version().into(),
        payload: json!({"DisplayNameChanged": {"display_name": name, "tries": [1, "é\"\n"]}}),
    }
}

async fn append_after(
    db: &TestDatabase,
    last_sequence: usize,
    last_hash: &str,
    events: &[NewEvent],
) -> sqlx::Result<Vec<i64>> {
    let head = StreamHead {
        aggregate_type: UserEvent::AGGREGATE_TYPE,
        aggregate_id: "u1",
        last_sequence,
        last_hash,
    };
    let metadata = json!({"actor_id": "u1", "user_agent": "«ünïcode»"});
    event_stream::append(&db.pool, &head, events, &metadata).await
}

#[tokio::test]
async fn the_appender_seals_and_chains_what_the_trigger_would_and_the_verifier_recomputes() {
    let db = TestDatabase::create().await;
    let positions = append_after(&db, 0, "", &[renamed("a"), renamed("b")])
        .await
        .unwrap();
    assert_eq!(positions.len(), 2);
    let stream = event_stream::load(&db.pool, UserEvent::AGGREGATE_TYPE, "u1", 1, false)
        .await
        .unwrap();
    assert_eq!(stream.last_sequence, 2);
    append_after(&db, 2, &stream.last_hash, &[renamed("c")])
        .await
        .unwrap();

    let events = stored(&db).await;
    assert_eq!(events.len(), 3);
    for (index, row) in events.iter().enumerate() {
        let event = &row.event;
        assert_eq!(event.check_hash(), Ok(()), "event {}", event.sequence);
        let expected_link = if index == 0 {
            ""
        } else {
            &events[index - 1].event.hash
        };
        assert_eq!(event.prev_hash, expected_link);
        let sealed = Json::parse(&event.sealed).unwrap();
        let visible = json!({"payload": row.payload, "metadata": row.metadata});
        let (visible, salts) = (Json::from_value(&visible), Json::from_value(&row.salts));
        assert_eq!(check_seal(&visible, &sealed, &salts), Ok(Vec::new()));
        let as_jsonb: String = sqlx::query_scalar("SELECT $1::jsonb::text")
            .bind(&event.sealed)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(event.sealed, as_jsonb, "not PostgreSQL's jsonb text");
    }
}

#[tokio::test]
async fn an_append_that_does_not_chain_to_its_stream_writes_nothing() {
    let db = TestDatabase::create().await;
    append_after(&db, 0, "", &[renamed("a")]).await.unwrap();

    let unlinked = append_after(
        &db,
        1,
        "not the hash of event 1",
        &[renamed("b"), renamed("c")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        unlinked
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("23000")
    );
    let raced = append_after(&db, 0, "", &[renamed("again")])
        .await
        .unwrap_err();
    assert_eq!(
        raced.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23505")
    );
    assert_eq!(stored(&db).await.len(), 1);
}
