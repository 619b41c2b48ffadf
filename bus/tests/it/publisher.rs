use crate::common::*;
use bus::{Envelope, Publisher};
use lapin::types::{AMQPValue, LongString};

#[tokio::test]
async fn published_messages_carry_properties_and_headers() {
    let fx = Fixture::new(5).await;
    let publisher = Publisher::new(&fx.conn, &fx.topology.exchange)
        .await
        .unwrap();
    assert!(publisher.is_connected());
    let events = vec![
        event("t-1", 1, "thing.happened"),
        event("t-1", 2, "thing.changed"),
    ];
    publisher.publish_batch(&events).await.unwrap();
    publisher.publish_batch(&[]).await.unwrap();

    for expected in &events {
        let message = fx.get(&fx.queue()).await.expect("message in queue");
        let delivery = &message.delivery;
        assert_eq!(Envelope::from_json(&delivery.data).unwrap(), *expected);
        assert_eq!(delivery.routing_key.as_str(), expected.event_type);

        let props = &delivery.properties;
        let message_id = expected.event_id.to_string();
        assert_eq!(props.message_id().as_ref().unwrap().as_str(), message_id);
        assert_eq!(*props.delivery_mode(), Some(2));
        assert_eq!(
            props.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(
            props.correlation_id().as_ref().unwrap().as_str(),
            expected.metadata.correlation_id.as_deref().unwrap()
        );
        assert_eq!(props.kind().as_ref().unwrap().as_str(), expected.event_type);
        assert_eq!(
            *props.timestamp(),
            Some(expected.recorded_at.timestamp() as u64)
        );

        let headers = props.headers().as_ref().unwrap().inner();
        let text = |value: &str| AMQPValue::LongString(LongString::from(value));
        assert_eq!(headers["aggregate_type"], text("thing"));
        assert_eq!(headers["aggregate_id"], text("t-1"));
        let correlation = expected.metadata.correlation_id.as_deref().unwrap();
        assert_eq!(headers["correlation_id"], text(correlation));
        let causation = expected.metadata.causation_id.as_deref().unwrap();
        assert_eq!(headers["causation_id"], text(causation));
        assert_eq!(
            headers["sequence"],
            AMQPValue::LongLongInt(expected.sequence)
        );
        assert_eq!(
            headers["global_position"],
            AMQPValue::LongLongInt(expected.global_position)
        );
    }
    assert!(fx.get(&fx.queue()).await.is_none());
}

#[tokio::test]
async fn unroutable_events_are_confirmed_and_dropped() {
    let fx = Fixture::new(5).await;
    let publisher = Publisher::new(&fx.conn, &fx.topology.exchange)
        .await
        .unwrap();
    let events = vec![event("o-1", 1, "order.created")];
    publisher.publish_batch(&events).await.unwrap();
    assert_eq!(fx.ready(&fx.queue()).await, 0);
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_fails() {
    let fx = Fixture::new(5).await;
    let missing = format!("{}.missing", fx.topology.exchange);
    let publisher = Publisher::new(&fx.conn, &missing).await.unwrap();
    let result = publisher.publish_batch(&events(3)).await;
    assert!(result.is_err(), "{result:?}");
    assert!(!publisher.is_connected());
}
