//! `roles_view`, `user_roles_view` and `sessions_view` under what the broker
//! may do: duplicates, any order, lost deliveries, early deliveries.

use crate::support::fold::{self, occurred_at, Views};
use crate::support::identity::{assign, create_role, identity_traffic, unassign};
use crate::support::run;
use crate::support::view::{checkpoint, wait_for_checkpoint};
use crate::support::writer::Writer;
use crate::support::{
    aggregate_key, committed_events, deliveries_with_gaps, project, small_batches, AggregateKey,
    Fixture, Relay, Rng, TIMEOUT,
};
use bus::Envelope;
use cqrs_es::Aggregate;
use domain::{Role, RoleCommand, Session, User, UserEvent};
use infra::event_log::LogPosition;
use infra::testing::eventually;
use projector::views::user_roles::UserRoleRow;
use projector::views::{View, ROLES_VIEW, USER_ROLES_VIEW};
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn duplicated_shuffled_and_missing_role_and_session_deliveries_end_equal_to_the_fold() {
    let fx = Fixture::new(small_batches).await;
    let writer = Writer::new(fx.pool());
    let users = writer.register(6).await;
    let identity = identity_traffic(&writer, &users, "delivery").await;
    let events = committed_events(fx.pool()).await;

    let aggregates: Vec<AggregateKey> = users
        .iter()
        .map(|user| aggregate_key(User::TYPE, user.id))
        .chain(
            identity
                .roles
                .iter()
                .map(|id| aggregate_key(Role::TYPE, *id)),
        )
        .chain(
            identity
                .sessions
                .iter()
                .map(|id| aggregate_key(Session::TYPE, *id)),
        )
        .collect();
    // The first user, the role deleted later, and a session: their first
    // event is never delivered, gap filling must load it.
    let forced_gaps = [
        aggregate_key(User::TYPE, users[0].id),
        aggregate_key(Role::TYPE, identity.roles[1]),
        aggregate_key(Session::TYPE, identity.sessions[0]),
    ];
    let mut deliveries =
        deliveries_with_gaps(&events, &aggregates, &forced_gaps, &mut Rng::new(0xA11CE));
    for (aggregate_type, id) in &forced_gaps {
        assert!(!deliveries
            .iter()
            .any(|event| &event.aggregate_type == aggregate_type
                && &event.aggregate_id == id
                && event.sequence == 1));
    }
    Rng::new(0xFACE).shuffle(&mut deliveries);

    let views = project(&fx, &deliveries, &events).await;
    assert_covers_every_case(&views);
}

/// The script produced every kind of row the views can hold.
fn assert_covers_every_case(views: &Views) {
    let statuses: Vec<&str> = views.sessions.iter().map(|s| s.status.as_str()).collect();
    for status in ["active", "revoked", "expired"] {
        assert!(statuses.contains(&status), "no {status} session");
    }
    let reasons: Vec<Option<&str>> = views
        .sessions
        .iter()
        .map(|s| s.end_reason.as_deref())
        .collect();
    for reason in ["logged_out", "absolute", "idle"] {
        assert!(
            reasons.contains(&Some(reason)),
            "no session ended by {reason}"
        );
    }
    assert!(views.roles.iter().any(|role| role.deleted_at.is_some()));
    assert!(views.roles.iter().any(|role| role.permissions.is_empty()));
    assert!(views
        .roles
        .iter()
        .all(|role| role.name_key == role.name.to_lowercase()));
    assert!(!views.user_roles.is_empty());
    assert!(views.users.iter().any(|user| user.locked_until.is_some()));
    assert!(views.users.iter().any(|user| user.locked_until.is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn user_roles_follow_assignments_and_outlive_a_deleted_role() {
    let fx = Fixture::new(|_| {}).await;
    let writer = Writer::new(fx.pool());
    let users = writer.register(2).await;
    let (ada, bob) = (users[0].id, users[1].id);
    let admin = create_role(&writer, "admin", 0).await;
    let support = create_role(&writer, "support", 1).await;
    assign(&writer, ada, admin).await;
    assign(&writer, ada, support).await;
    assign(&writer, bob, support).await;
    unassign(&writer, ada, admin).await;
    writer.execute_role(support, RoleCommand::Delete).await;
    assign(&writer, ada, admin).await;
    let mut relay = Relay::default();
    let events = relay.forward(fx.pool(), &fx.broker).await;
    let _projector = run::start_in_process(fx.settings.clone()).await;

    let views = fold::wait_for_fold(fx.pool()).await;
    let held: Vec<(Uuid, Uuid)> = views
        .user_roles
        .iter()
        .map(|row| (row.user_id, row.role_id))
        .collect();
    let mut expected = vec![(ada, admin), (ada, support), (bob, support)];
    expected.sort();
    assert_eq!(held, expected);
    let reassigned = events
        .iter()
        .rfind(|event| {
            event.event_type == UserEvent::ROLE_ASSIGNED.name()
                && event.aggregate_id == ada.to_string()
        })
        .expect("the second assignment of admin");
    assert_eq!(
        user_role(&views.user_roles, ada, admin).assigned_at,
        occurred_at(reassigned),
        "assigned_at is the time of the assignment in force"
    );
    assert_eq!(live_roles(fx.pool(), ada).await, [admin]);
    assert_eq!(live_roles(fx.pool(), bob).await, Vec::<Uuid>::new());

    // The whole history again, then one new event behind it: once that is
    // applied, so are the duplicates before it.
    fx.broker.publish(&events).await;
    assign(&writer, bob, admin).await;
    relay.forward(fx.pool(), &fx.broker).await;
    let after = fold::wait_for_fold(fx.pool()).await;
    assert_eq!(
        after.roles, views.roles,
        "a duplicate revived the deleted role"
    );
    assert_eq!(live_roles(fx.pool(), bob).await, [admin]);
    fx.broker.assert_delivered_and_none_dead().await;
}

fn user_role(rows: &[UserRoleRow], user_id: Uuid, role_id: Uuid) -> &UserRoleRow {
    rows.iter()
        .find(|row| row.user_id == user_id && row.role_id == role_id)
        .expect("an assignment")
}

/// A user's roles as the API reads them: deleted roles left out by the join.
async fn live_roles(pool: &PgPool, user_id: Uuid) -> Vec<Uuid> {
    sqlx::query_scalar(&format!(
        "SELECT ur.role_id FROM {USER_ROLES_VIEW} ur JOIN {ROLES_VIEW} r USING (role_id) \
         WHERE ur.user_id = $1 AND r.deleted_at IS NULL ORDER BY ur.role_id",
    ))
    .bind(user_id)
    .fetch_all(pool)
    .await
    .expect("read a user's roles")
}

/// Read-your-writes trusts that every event at or below the checkpoint is
/// applied, whichever view it belongs to.
#[tokio::test(flavor = "multi_thread")]
async fn the_checkpoint_never_passes_a_role_or_session_event_that_is_not_applied() {
    let fx = Fixture::new(|_| {}).await;
    let writer = Writer::new(fx.pool());
    let users = writer.register(3).await;
    identity_traffic(&writer, &users, "early").await;
    let events = committed_events(fx.pool()).await;
    let (last, earlier) = events.split_last().expect("events");
    assert_eq!(last.aggregate_type, Session::TYPE);
    let _projector = run::start_in_process(fx.settings.clone()).await;

    fx.broker.publish(std::slice::from_ref(last)).await;
    eventually(TIMEOUT, "the early event applied", || async {
        is_applied(fx.pool(), last).await.then_some(())
    })
    .await;
    let position = checkpoint(fx.pool()).await;
    for event in earlier.iter().filter(|e| LogPosition::of(e) <= position) {
        assert!(
            is_applied(fx.pool(), event).await,
            "checkpoint {position:?} passes {} {} (sequence {} of {}), not applied",
            event.event_type,
            event.global_position,
            event.sequence,
            event.aggregate_id
        );
    }
    assert!(position < LogPosition::of(last));

    fx.broker.publish(earlier).await;
    wait_for_checkpoint(fx.pool(), LogPosition::of(last)).await;
}

/// Whether the view of the event's aggregate type has reached its sequence.
async fn is_applied(pool: &PgPool, event: &Envelope) -> bool {
    let view = View::of_aggregate(&event.aggregate_type).expect("an aggregate type with a view");
    let (table, key) = (view.name(), view.key_column());
    let id = Uuid::parse_str(&event.aggregate_id).expect("uuid");
    let sequence: Option<i64> =
        sqlx::query_scalar(&format!("SELECT sequence FROM {table} WHERE {key} = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await
            .expect("read a sequence");
    sequence.is_some_and(|sequence| sequence >= event.sequence)
}
