//! A fresh database and topology with a tap queue, the `relay` binary run
//! against them, and commands that append events.

use std::time::Duration;

use bus::Envelope;
use domain::{DisplayName, Email, PasswordHash, User, UserCommand};
use futures_util::StreamExt;
use infra::commands::CommandBus;
use infra::testing::{
    amqp_url, eventually, take_exactly, take_within, tap_group, ChildProcess, TestDatabase,
    TestTopology,
};
use lapin::options::{BasicConsumeOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use uuid::Uuid;

pub struct Fixture {
    pub db: TestDatabase,
    topology: TestTopology,
    channel: lapin::Channel,
    connection: lapin::Connection,
}

impl Fixture {
    pub async fn new() -> Self {
        let db = TestDatabase::create().await;
        let topology = TestTopology::new(vec![tap_group()]);
        let (connection, channel, _) = topology.declare_for_publishing(&tap_group()).await;
        Self {
            db,
            topology,
            channel,
            connection,
        }
    }

    pub fn spawn_relay(&self, name: &'static str) -> ChildProcess {
        self.spawn_relay_with(name, &[])
    }

    /// The relay with `extra` settings (later ones win).
    pub fn spawn_relay_with(
        &self,
        name: &'static str,
        extra: &[(&'static str, String)],
    ) -> ChildProcess {
        self.spawn_relay_binary(name, env!("CARGO_BIN_EXE_relay"), extra)
    }

    /// [`Fixture::spawn_relay_with`] of another build of the relay.
    pub fn spawn_relay_binary(
        &self,
        name: &'static str,
        binary: &str,
        extra: &[(&'static str, String)],
    ) -> ChildProcess {
        let mut env = vec![
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
            // Every relay of a test signs with one key, outside the working tree.
            (
                "AUDIT_SIGNING_KEY_FILE",
                std::env::temp_dir()
                    .join(format!("relay-test-{}", self.db.name))
                    .join("audit.pem")
                    .display()
                    .to_string(),
            ),
        ];
        env.extend(extra.iter().cloned());
        let log = std::env::temp_dir().join(format!("relay-{name}-{}.log", Uuid::new_v4()));
        ChildProcess::spawn(name, binary, &env, log)
    }

    /// Registers `count` users, one command each; returns the last position.
    pub async fn register(&self, count: usize) -> i64 {
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
    pub async fn tapped(&self, count: usize) -> Vec<Envelope> {
        let queue = self.topology.topology.queue_name(&tap_group());
        take_exactly(&self.channel, &queue, count).await
    }

    /// Takes what reaches the tap queue within `within`, up to `count`.
    pub async fn tapped_within(&self, count: usize, within: Duration) -> Vec<Envelope> {
        let queue = self.topology.topology.queue_name(&tap_group());
        take_within(&self.channel, &queue, count, within).await
    }

    /// The ids of the events on the tap queue (signed checkpoints passed
    /// over), consumed until none arrives for `quiet`, duplicates included.
    pub async fn tapped_ids_until_quiet(&self, quiet: Duration) -> Vec<Uuid> {
        let channel = self.connection.create_channel().await.unwrap();
        let queue = self.topology.topology.queue_name(&tap_group());
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "pipeline-test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut ids = Vec::new();
        while let Ok(Some(delivery)) = tokio::time::timeout(quiet, consumer.next()).await {
            let delivery = delivery.unwrap();
            if let Ok(envelope) = Envelope::from_json(&delivery.data) {
                ids.push(envelope.event_id);
            }
        }
        let _ = channel.close(200, "OK".into()).await;
        ids
    }

    /// Messages ready on the tap queue.
    pub async fn tap_depth(&self) -> u32 {
        let queue = self.topology.topology.queue_name(&tap_group());
        bus::ready_messages(&self.connection, &queue).await.unwrap()
    }

    /// Empties the tap queue.
    pub async fn purge_tap(&self) {
        let queue = self.topology.topology.queue_name(&tap_group());
        self.channel
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap();
    }

    /// A publisher with confirms on the topology's exchange, as the relay's.
    pub async fn publisher_to_tap(&self) -> (lapin::Connection, lapin::Channel, bus::Publisher) {
        self.topology.declare_for_publishing(&tap_group()).await
    }

    pub async fn checkpoint_reaches(&self, position: i64) {
        eventually(Duration::from_secs(10), "the relay checkpoint", || async {
            let at = relay::RELAY_CHECKPOINT.load(&self.db.pool).await.unwrap();
            (at.global_position >= position).then_some(())
        })
        .await;
    }
}
