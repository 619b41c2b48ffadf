use crate::common::*;
use bus::{BusError, ConsumerGroup};
use lapin::{options::QueueDeclareOptions, types::FieldTable};

#[tokio::test]
async fn declare_group_is_idempotent() {
    let fx = Fixture::new(5).await;
    let channel = fx.conn.create_channel().await.unwrap();
    fx.topology.declare_exchange(&channel).await.unwrap();
    fx.topology
        .declare_group(&channel, &fx.group)
        .await
        .unwrap();
    fx.topology
        .declare_group(&channel, &fx.group)
        .await
        .unwrap();

    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    for queue in [fx.queue(), fx.dead_queue()] {
        channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .expect("queue exists");
    }
}

#[tokio::test]
async fn redeclaring_with_another_delivery_limit_is_refused() {
    let fx = Fixture::new(5).await;
    let channel = fx.conn.create_channel().await.unwrap();
    let changed = ConsumerGroup {
        delivery_limit: 6,
        ..fx.group.clone()
    };
    let result = fx.topology.declare_group(&channel, &changed).await;
    assert!(matches!(result, Err(BusError::Amqp(_))), "{result:?}");
}
