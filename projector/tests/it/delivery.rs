//! What the broker may do to the projector: deliver events twice, out of
//! order, not at all (a later event of the user arrives instead), or hand it
//! a message it can never apply.

use crate::support::fold::{self, audit_log_rows, rows};
use crate::support::run;
use crate::support::view::{checkpoint, wait_for_checkpoint};
use crate::support::writer::Writer;
use crate::support::{
    aggregate_key, committed_events, death_reason, deliveries_with_gaps, handler_error, project,
    small_batches, AggregateKey, Fixture, Rng, TIMEOUT,
};
use bus::Envelope;
use cqrs_es::Aggregate;
use domain::{User, UserEvent};
use infra::event_log::LogPosition;
use infra::testing::eventually;
use projector::views::users::UserRow;
use projector::views::{AuditLogRow, AUDIT_LOG, USERS_VIEW};
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn duplicated_shuffled_and_missing_deliveries_end_equal_to_the_fold() {
    let fx = Fixture::new(small_batches).await;
    let writer = Writer::new(fx.pool());
    let mut users = writer.register(8).await;
    // From registered only to twice through every kind of change.
    let steps = [16, 3, 8, 4, 2, 7, 5, 0];
    writer.advance(&mut users, |position| steps[position]).await;
    let events = committed_events(fx.pool()).await;

    let aggregates: Vec<AggregateKey> = users
        .iter()
        .map(|user| aggregate_key(User::TYPE, user.id))
        .collect();
    let mut deliveries = deliveries_with_gaps(
        &events,
        &aggregates,
        &aggregates[..1],
        &mut Rng::new(0x5EED),
    );
    let first_user = users[0].id.to_string();
    assert!(
        !deliveries
            .iter()
            .any(|event| event.aggregate_id == first_user && event.sequence == 1),
        "the first user's registration is never delivered: gap filling must load it"
    );
    let skipped = events
        .iter()
        .filter(|event| !deliveries.iter().any(|d| d.event_id == event.event_id))
        .count();
    assert!(skipped >= 5, "only {skipped} events skipped");
    assert_eq!(deliveries.len(), 2 * (events.len() - skipped));
    Rng::new(0xD1CE).shuffle(&mut deliveries);

    let views = project(&fx, &deliveries, &events).await;
    let rows = views.users;
    assert_eq!(rows.len(), users.len());
    let statuses: Vec<&str> = rows.iter().map(|row| row.status.as_str()).collect();
    assert!(statuses.contains(&"active") && statuses.contains(&"deactivated"));
    // One audit row per committed event, the skipped ones included (gap
    // filling loaded them), as the pure function makes it of the stored event.
    let mut stored = events.clone();
    stored.sort_by_key(|event| event.global_position);
    let expected: Vec<AuditLogRow> = stored.iter().map(AuditLogRow::of).collect();
    assert_eq!(audit_log_rows(fx.pool(), AUDIT_LOG).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_are_dead_lettered_and_later_events_still_apply() {
    let fx = Fixture::new(|settings| settings.delivery_limit = 3).await;
    let writer = Writer::new(fx.pool());
    let mut users = writer.register(5).await;
    writer.advance(&mut users, |position| position + 1).await;
    let events = committed_events(fx.pool()).await;

    let template = || Envelope {
        event_id: Uuid::new_v4(),
        aggregate_id: Uuid::now_v7().to_string(),
        sequence: 1,
        ..events[0].clone()
    };
    // Permanent: the same bytes can never apply, dead-lettered at once.
    let undecodable = Envelope {
        event_type: UserEvent::REGISTERED.name().into(),
        payload: serde_json::json!({ "Bogus": {} }),
        ..template()
    };
    let bad_id = Envelope {
        aggregate_id: "not-a-uuid".into(),
        ..template()
    };
    // Transient: the event store may yet hold the events before it; retried
    // until the delivery limit.
    let ahead_of_history = Envelope {
        sequence: 2,
        ..template()
    };
    let poison = [undecodable, bad_id, ahead_of_history];
    fx.broker.publish(&poison).await;
    fx.broker.publish(&events).await;
    let _projector = run::start_in_process(fx.settings.clone()).await;

    let mut dead = Vec::new();
    while dead.len() < poison.len() {
        let message = eventually(TIMEOUT, "the poison messages to be dead-lettered", || {
            fx.broker.take_dead_letter()
        })
        .await;
        let event =
            Envelope::from_json(&message.delivery.data).expect("dead letter is an envelope");
        dead.push((event, handler_error(&message), death_reason(&message)));
    }
    let dead_letter_of = |sent: &Envelope| {
        let (_, handler_error, death_reason) = dead
            .iter()
            .find(|(event, ..)| event == sent)
            .unwrap_or_else(|| panic!("{} not dead-lettered", sent.event_id));
        (handler_error.as_deref(), death_reason.as_deref())
    };
    let [undecodable, bad_id, ahead_of_history] = &poison;
    let (reason, _) = dead_letter_of(undecodable);
    assert!(
        reason.is_some_and(|reason| reason.contains("does not decode")),
        "{reason:?}"
    );
    let (reason, _) = dead_letter_of(bad_id);
    assert!(
        reason.is_some_and(|reason| reason.contains("is not a UUID")),
        "{reason:?}"
    );
    assert_eq!(
        dead_letter_of(ahead_of_history),
        (None, Some("delivery_limit"))
    );

    let rows = fold::wait_for_fold(fx.pool()).await.users;
    assert_eq!(rows.len(), users.len());
    assert!(!rows.iter().any(|row| poison
        .iter()
        .any(|event| row.id.to_string() == event.aggregate_id)));
    let last = LogPosition::of(events.last().expect("events"));
    assert_eq!(checkpoint(fx.pool()).await, last);
    fx.broker.assert_delivered_and_none_dead().await;
}

/// Read-your-writes (api/src/freshness.rs) trusts that every event at or
/// below the checkpoint is applied, so an event delivered early (another
/// was requeued after a failure, or is held by a second consumer of the
/// group) must not move the checkpoint past the events still missing.
#[tokio::test(flavor = "multi_thread")]
async fn the_checkpoint_never_passes_an_event_that_is_not_applied() {
    let fx = Fixture::new(|_| {}).await;
    let writer = Writer::new(fx.pool());
    let mut users = writer.register(2).await;
    writer.advance(&mut users, |_| 1).await;
    let events = committed_events(fx.pool()).await;
    let (last, earlier) = events.split_last().expect("events");
    let _projector = run::start_in_process(fx.settings.clone()).await;

    // The last event arrives first; gap filling applies its user's history.
    fx.broker.publish(std::slice::from_ref(last)).await;
    eventually(TIMEOUT, "the early event applied", || async {
        user_rows(fx.pool())
            .await
            .iter()
            .any(|row| row.id.to_string() == last.aggregate_id && row.sequence == last.sequence)
            .then_some(())
    })
    .await;
    let position = checkpoint(fx.pool()).await;
    let rows = user_rows(fx.pool()).await;
    let recorded = audit_log_rows(fx.pool(), AUDIT_LOG).await;
    let is_recorded = |event: &Envelope| recorded.contains(&AuditLogRow::of(event));
    for event in earlier.iter().filter(|e| LogPosition::of(e) <= position) {
        let applied = rows
            .iter()
            .any(|row| row.id.to_string() == event.aggregate_id && row.sequence >= event.sequence);
        assert!(
            applied && is_recorded(event),
            "checkpoint {position:?} passes event {} (sequence {} of user {}), \
             applied: {applied}, in the audit log: {}",
            event.global_position,
            event.sequence,
            event.aggregate_id,
            is_recorded(event)
        );
    }
    assert!(position < LogPosition::of(last));
    // The history gap filling loaded is in the audit log with the event.
    let stream = events
        .iter()
        .filter(|event| event.aggregate_id == last.aggregate_id);
    assert!(stream.clone().count() > 1);
    for event in stream {
        assert!(
            is_recorded(event),
            "event {} not recorded",
            event.global_position
        );
    }

    // Once the rest arrives, the checkpoint reaches the end.
    fx.broker.publish(earlier).await;
    wait_for_checkpoint(fx.pool(), LogPosition::of(last)).await;
}

async fn user_rows(pool: &PgPool) -> Vec<UserRow> {
    rows(pool, USERS_VIEW).await
}
