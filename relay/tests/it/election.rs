//! The `relay` binary on its own: of two processes one publishes, the other
//! waits, and takes over from the published checkpoint when the first is
//! killed. Every event reaches the broker exactly once here because the
//! leader is killed only after its checkpoint covers what it published.

use std::time::Duration;

use bus::Envelope;
use domain::{DisplayName, Email, PasswordHash, User, UserCommand, UserEvent};
use infra::commands::CommandBus;
use infra::testing::{
    amqp_url, eventually, take_exactly, tap_group, ChildProcess, TestDatabase, TestTopology,
};
use uuid::Uuid;

struct Fixture {
    db: TestDatabase,
    topology: TestTopology,
    channel: lapin::Channel,
    _connection: lapin::Connection,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDatabase::create().await;
        let topology = TestTopology::new(vec![tap_group()]);
        let (connection, channel, _) = topology.declare_for_publishing(&tap_group()).await;
        Self {
            db,
            topology,
            channel,
            _connection: connection,
        }
    }

    fn spawn_relay(&self, name: &'static str) -> ChildProcess {
        let env = vec![
            ("DATABASE_URL", self.db.url.clone()),
            ("AMQP_URL", amqp_url()),
            ("AMQP_EXCHANGE", self.topology.topology.exchange.clone()),
            (
                "AMQP_QUEUE_PREFIX",
                self.topology.topology.queue_prefix.clone(),
            ),
            ("MIGRATE_ON_START", "false".into()),
            ("LOG_FORMAT", "json".into()),
            ("RELAY_ADDR", "127.0.0.1:0".into()),
            ("RELAY_POLL_INTERVAL_MS", "50".into()),
            // Both relays sign with one key, outside the working tree.
            (
                "AUDIT_SIGNING_KEY_FILE",
                std::env::temp_dir()
                    .join(format!("relay-election-{}", self.db.name))
                    .join("audit.pem")
                    .display()
                    .to_string(),
            ),
        ];
        let log = std::env::temp_dir().join(format!("relay-{name}-{}.log", Uuid::new_v4()));
        ChildProcess::spawn(name, env!("CARGO_BIN_EXE_relay"), &env, log)
    }

    async fn register(&self, count: usize) -> i64 {
        let users = CommandBus::<User>::new(self.db.pool.clone());
        let mut position = 0;
        for _ in 0..count {
            let user_id = Uuid::now_v7();
            let command = UserCommand::Register {
                user_id,
                email: Email::parse(&format!("{user_id}@example.com")).unwrap(),
                display_name: DisplayName::parse("R").unwrap(),
                password_hash: PasswordHash::new("$argon2id$test".into()),
            };
            let outcome = users
                .execute(&user_id.to_string(), command, &Default::default())
                .await
                .unwrap();
            position = outcome.position;
        }
        position
    }

    /// Takes exactly `count` messages from the tap queue.
    async fn tapped(&self, count: usize) -> Vec<Envelope> {
        let queue = self.topology.topology.queue_name(&tap_group());
        take_exactly(&self.channel, &queue, count).await
    }

    async fn checkpoint_reaches(&self, position: i64) {
        eventually(Duration::from_secs(10), "the relay checkpoint", || async {
            let at = relay::RELAY_CHECKPOINT.load(&self.db.pool).await.unwrap();
            (at.global_position >= position).then_some(())
        })
        .await;
    }
}

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
