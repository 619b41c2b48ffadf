//! Broker names of their own for each test.

use uuid::Uuid;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| AMQP_URL.to_string())
}

/// Exchange and queue names no other test uses; deleted on `Drop`.
pub struct TestTopology {
    pub topology: bus::Topology,
    pub groups: Vec<bus::ConsumerGroup>,
}

impl TestTopology {
    pub fn new(groups: Vec<bus::ConsumerGroup>) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        Self {
            topology: bus::Topology {
                exchange: format!("test.{id}.events"),
                queue_prefix: format!("test.{id}."),
            },
            groups,
        }
    }

    /// Connects, declares the exchange and `group`, and opens a publisher
    /// with confirms on the exchange: what a test that plays the relay needs.
    pub async fn declare_for_publishing(
        &self,
        group: &bus::ConsumerGroup,
    ) -> (lapin::Connection, lapin::Channel, bus::Publisher) {
        let conn = bus::connect(&amqp_url())
            .await
            .expect("connect to RabbitMQ");
        let channel = conn.create_channel().await.expect("channel");
        self.topology
            .declare_exchange(&channel)
            .await
            .expect("declare exchange");
        self.topology
            .declare_group(&channel, group)
            .await
            .expect("declare consumer group");
        let publisher = bus::Publisher::new(&conn, &self.topology.exchange)
            .await
            .expect("publisher");
        (conn, channel, publisher)
    }
}

impl Drop for TestTopology {
    fn drop(&mut self) {
        let topology = self.topology.clone();
        let groups = self.groups.clone();
        super::block_on_own_runtime(async move {
            let Ok(connection) = bus::connect(&amqp_url()).await else {
                return;
            };
            if let Ok(channel) = connection.create_channel().await {
                for group in &groups {
                    let _ = topology.delete_group(&channel, group).await;
                }
                let _ = topology.delete_exchange(&channel).await;
            }
            let _ = connection.close(200, "test done".into()).await;
        });
    }
}
