//! The `relay` binary on its own: of two processes one publishes, the other
//! waits, and takes over from the published checkpoint when the first is
//! killed. Every event reaches the broker exactly once here because the
//! leader is killed only after its checkpoint covers what it published.

use domain::UserEvent;

use crate::support::Fixture;

#[tokio::test]
async fn a_standalone_relay_waits_for_the_leader_and_takes_over_when_it_is_killed() {
    let fixture = Fixture::new().await;
    let mut leader = fixture.spawn_relay("leader");
    let last = fixture.register(3).await;
    assert_eq!(fixture.tapped(3).await.len(), 3);
    fixture.checkpoint_reaches(last).await;

    let mut standby = fixture.spawn_relay("standby");
    let last = fixture.register(2).await;
    assert_eq!(
        fixture.tapped(2).await.len(),
        2,
        "each event published once"
    );
    fixture.checkpoint_reaches(last).await;

    leader.kill();
    fixture.register(1).await;
    let tapped = fixture.tapped(1).await;
    assert_eq!(tapped[0].event_type, UserEvent::REGISTERED.name());
    assert!(standby.is_running());
}
