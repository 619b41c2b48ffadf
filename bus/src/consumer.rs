use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicQosOptions, BasicRejectOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, Consumer,
};
use tokio::sync::watch;
use tracing::{debug, error, info, info_span, warn, Instrument, Span};

use crate::dead_letters::DeadLetterQueue;
use crate::{topology::short, BatchHandler, BusError, Envelope, HandlerError};

/// Tuning of [`run_consumer`].
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// `basic.qos` prefetch count (unacked deliveries the broker sends ahead).
    pub prefetch: u16,
    /// Most events handed to the handler at once.
    pub max_batch: usize,
    /// Delay before requeueing an event on its first failed delivery.
    pub backoff_base: Duration,
    /// Upper bound of the (doubling) requeue delay.
    pub backoff_max: Duration,
    /// Consumer tag; empty lets the broker generate one.
    pub consumer_tag: String,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            prefetch: 256,
            max_batch: 128,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            consumer_tag: String::new(),
        }
    }
}

/// Consumes `queue` in batches until `shutdown` becomes true (or its sender is dropped),
/// then finishes the batch in hand, cancels the consumer, handles the deliveries the
/// broker had already pushed (at most `prefetch`), closes the channel and returns `Ok`.
///
/// A batch the handler rejects is retried event by event, so one failing event
/// does not hold back the others. An event that fails with
/// [`HandlerError::Transient`] is requeued after a backoff, and dead-lettered
/// by the queue's delivery limit (`x-death` reason `delivery_limit`) if it
/// keeps failing. One that fails with [`HandlerError::Permanent`], and a
/// message that is no [`Envelope`], is dead-lettered at once: copied to the
/// queue's dead-letter queue with the reason (the error's display chain) in
/// the [`DEAD_LETTER_REASON_HEADER`](crate::DEAD_LETTER_REASON_HEADER)
/// header (`x-handler-error`), and acked once the broker confirmed the copy.
///
/// Returns `Err` when the channel fails or the broker cancels the consumer; the caller
/// is expected to reconnect and call it again. Delivery is at-least-once: the handler
/// must be idempotent.
pub async fn run_consumer<H: BatchHandler>(
    conn: &Connection,
    queue: &str,
    handler: &H,
    opts: &ConsumerOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let channel = conn.create_channel().await?;
    let dead_letters = DeadLetterQueue::open(conn, queue).await?;
    let worker = Worker {
        handler,
        opts,
        queue,
        dead_letters: &dead_letters,
        shutdown,
    };
    let result = worker.consume(&channel).await;
    if let Err(err) = &result {
        error!(queue, error = %err, "consumer failed");
    }
    close_channel(&channel).await;
    dead_letters.close().await;
    result
}

struct Worker<'a, H> {
    handler: &'a H,
    opts: &'a ConsumerOptions,
    queue: &'a str,
    dead_letters: &'a DeadLetterQueue,
    shutdown: watch::Receiver<bool>,
}

impl<H: BatchHandler> Worker<'_, H> {
    async fn consume(self, channel: &Channel) -> Result<(), BusError> {
        channel
            .basic_qos(self.opts.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                short(self.queue)?,
                short(&self.opts.consumer_tag)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        info!(queue = self.queue, consumer_tag = %consumer.tag(), "consumer started");
        self.run(&mut consumer).await?;
        channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await?;
        self.finish_buffered(&mut consumer).await?;
        info!(queue = self.queue, "consumer stopped on shutdown");
        Ok(())
    }

    /// The batch loop; returns `Ok` once shutdown is requested (batch in hand finished).
    async fn run(&self, consumer: &mut Consumer) -> Result<(), BusError> {
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown_signalled(self.shutdown.clone()) => return Ok(()),
                next = consumer.next() => next,
            };
            let first = into_delivery(next, self.queue)?;
            self.process_drained(consumer, first).await?;
        }
    }

    /// After the cancel: handles the deliveries the broker had already pushed to us.
    /// Returning them unprocessed (nack or channel close) would raise their quorum-queue
    /// delivery count, so frequent restarts could dead-letter healthy events.
    async fn finish_buffered(&self, consumer: &mut Consumer) -> Result<(), BusError> {
        while let Some(Some(Ok(first))) = consumer.next().now_or_never() {
            match self.process_drained(consumer, first).await {
                Err(BusError::ConsumerCancelled { .. }) => return Ok(()),
                other => other?,
            }
        }
        Ok(())
    }

    /// Handles `first` plus whatever is already buffered; `Err` if the stream ended.
    async fn process_drained(
        &self,
        consumer: &mut Consumer,
        first: Delivery,
    ) -> Result<(), BusError> {
        let (batch, stream_end) = drain(consumer, first, self.opts.max_batch, self.queue);
        self.process(batch).await?;
        stream_end.map_or(Ok(()), Err)
    }

    async fn process(&self, deliveries: Vec<Delivery>) -> Result<(), BusError> {
        let (deliveries, events) = self.decode_or_dead_letter(deliveries).await?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let span = info_span!(
            "handle_batch",
            queue = self.queue,
            size = events.len(),
            first_position = first.global_position,
            last_position = last.global_position,
        );
        self.handle_batch(&deliveries, &events)
            .instrument(span)
            .await
    }

    async fn handle_batch(
        &self,
        deliveries: &[Delivery],
        events: &[Envelope],
    ) -> Result<(), BusError> {
        match self.handler.handle(events).await {
            Ok(()) => ack_all(deliveries).await,
            Err(err) if events.len() == 1 => {
                let failed = self.failed(&deliveries[0], &err);
                failed.instrument(event_span(&events[0])).await
            }
            Err(err) => {
                let reason = err.reason();
                warn!(error = %reason, "batch failed; handling its events one at a time");
                self.handle_one_by_one(deliveries, events).await
            }
        }
    }

    async fn handle_one_by_one(
        &self,
        deliveries: &[Delivery],
        events: &[Envelope],
    ) -> Result<(), BusError> {
        for (delivery, event) in deliveries.iter().zip(events) {
            self.handle_one(delivery, event)
                .instrument(event_span(event))
                .await?;
        }
        Ok(())
    }

    async fn handle_one(&self, delivery: &Delivery, event: &Envelope) -> Result<(), BusError> {
        match self.handler.handle(std::slice::from_ref(event)).await {
            Ok(()) => settled(delivery.ack(BasicAckOptions::default()).await, delivery),
            Err(err) => self.failed(delivery, &err).await,
        }
    }

    async fn failed(&self, delivery: &Delivery, err: &HandlerError) -> Result<(), BusError> {
        match err {
            HandlerError::Permanent(_) => self.dead_letter(delivery, &err.reason()).await,
            HandlerError::Transient(_) => self.retry_later(delivery, err).await,
        }
    }

    /// Backs off, then requeues; the queue's delivery limit dead-letters poison events.
    async fn retry_later(&self, delivery: &Delivery, err: &HandlerError) -> Result<(), BusError> {
        let attempt = delivery_count(&delivery.properties).saturating_add(1);
        let delay = backoff_delay(self.opts, attempt);
        crate::metrics::retried(self.queue);
        warn!(
            error = %err.reason(),
            attempt,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "event failed; requeueing it after backoff"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown_signalled(self.shutdown.clone()) => {}
        }
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        settled(delivery.nack(requeue).await, delivery)
    }

    /// Splits off the deliveries that are no envelope and dead-letters them.
    async fn decode_or_dead_letter(
        &self,
        deliveries: Vec<Delivery>,
    ) -> Result<(Vec<Delivery>, Vec<Envelope>), BusError> {
        let mut kept = Vec::with_capacity(deliveries.len());
        let mut events = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match Envelope::from_json(&delivery.data) {
                Ok(event) => {
                    kept.push(delivery);
                    events.push(event);
                }
                Err(err) => self.dead_letter(&delivery, &err.to_string()).await?,
            }
        }
        Ok((kept, events))
    }

    /// Copies the delivery to the dead-letter queue with `reason`, then acks
    /// it. Should the copy be refused (no dead-letter queue), the delivery is
    /// rejected instead: the queue's own dead-lettering takes it, without
    /// the reason.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), BusError> {
        error!(
            error = reason,
            delivery_tag = delivery.delivery_tag,
            routing_key = %delivery.routing_key,
            message_id = delivery.properties.message_id().as_ref().map(|id| id.as_str()),
            "permanent failure; dead-lettering the message"
        );
        crate::metrics::rejected(self.queue);
        match self.dead_letters.put(delivery, reason).await {
            Ok(()) => settled(delivery.ack(BasicAckOptions::default()).await, delivery),
            Err(err @ (BusError::Returned { .. } | BusError::Nacked { .. })) => {
                warn!(error = %err, "dead-letter queue refused the copy; rejecting the message");
                let options = BasicRejectOptions { requeue: false };
                settled(delivery.reject(options).await, delivery)
            }
            Err(err) => Err(err),
        }
    }
}

/// Resolves once shutdown is requested or can no longer be requested (sender dropped).
async fn shutdown_signalled(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn into_delivery(next: Option<lapin::Result<Delivery>>, queue: &str) -> Result<Delivery, BusError> {
    match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(err)) => Err(err.into()),
        None => Err(BusError::ConsumerCancelled {
            queue: queue.to_owned(),
        }),
    }
}

/// Adds the deliveries that are already buffered (without waiting) to `first`.
/// Also returns the error that ended the stream, if it ended while draining.
fn drain(
    consumer: &mut Consumer,
    first: Delivery,
    max_batch: usize,
    queue: &str,
) -> (Vec<Delivery>, Option<BusError>) {
    let mut batch = vec![first];
    while batch.len() < max_batch {
        let Some(next) = consumer.next().now_or_never() else {
            break;
        };
        match into_delivery(next, queue) {
            Ok(delivery) => batch.push(delivery),
            Err(err) => return (batch, Some(err)),
        }
    }
    (batch, None)
}

/// Acks the whole batch with one multiple-ack of its last delivery tag. Safe because
/// every earlier delivery on this channel has already been settled.
async fn ack_all(deliveries: &[Delivery]) -> Result<(), BusError> {
    let Some(last) = deliveries.last() else {
        return Ok(());
    };
    let result = last.ack(BasicAckOptions { multiple: true }).await;
    settled(result, last)?;
    debug!(count = deliveries.len(), "batch acked");
    Ok(())
}

/// lapin reports `Ok(false)` when the channel closed before the ack/nack could be sent.
fn settled(result: lapin::Result<bool>, delivery: &Delivery) -> Result<(), BusError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(BusError::ChannelClosed {
            delivery_tag: delivery.delivery_tag,
        }),
        Err(err) => Err(err.into()),
    }
}

fn event_span(event: &Envelope) -> Span {
    info_span!(
        "handle_event",
        event_id = %event.event_id,
        event_type = %event.event_type,
        global_position = event.global_position,
        correlation_id = event.metadata.correlation_id.as_deref(),
    )
}

/// Previous deliveries of this message: the quorum queue's `x-delivery-count` header
/// (absent on the first delivery).
fn delivery_count(properties: &BasicProperties) -> u32 {
    let value = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count"));
    let count = match value {
        Some(AMQPValue::LongLongInt(v)) => *v,
        Some(AMQPValue::LongInt(v)) => i64::from(*v),
        Some(AMQPValue::LongUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortShortUInt(v)) => i64::from(*v),
        _ => 0,
    };
    u32::try_from(count).unwrap_or(if count < 0 { 0 } else { u32::MAX })
}

/// `min(backoff_max, backoff_base * 2^(attempt-1))`, attempt counted from 1.
fn backoff_delay(opts: &ConsumerOptions, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    opts.backoff_base
        .saturating_mul(1u32 << exponent)
        .min(opts.backoff_max)
}

async fn close_channel(channel: &Channel) {
    if !channel.status().connected() {
        return;
    }
    if let Err(err) = channel.close(200, "OK".into()).await {
        debug!(error = %err, "closing consumer channel failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    fn props_with_count(value: AMQPValue) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), value);
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn delivery_count_from_header() {
        assert_eq!(delivery_count(&BasicProperties::default()), 0);
        assert_eq!(
            delivery_count(&props_with_count(AMQPValue::LongLongInt(3))),
            3
        );
        assert_eq!(delivery_count(&props_with_count(AMQPValue::LongInt(2))), 2);
        assert_eq!(
            delivery_count(&props_with_count(AMQPValue::LongLongInt(-1))),
            0
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let opts = ConsumerOptions::default();
        let ms = |attempt| backoff_delay(&opts, attempt).as_millis();
        assert_eq!(ms(0), 100);
        assert_eq!(ms(1), 100);
        assert_eq!(ms(2), 200);
        assert_eq!(ms(4), 800);
        assert_eq!(ms(8), 10_000);
        assert_eq!(ms(u32::MAX), 10_000);
    }

    struct Noop;

    #[async_trait]
    impl BatchHandler for Noop {
        async fn handle(&self, _events: &[Envelope]) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    fn assert_send<T: Send>(_: &T) {}

    #[allow(dead_code)]
    async fn run_consumer_future_is_send(conn: &Connection) {
        let (_tx, rx) = watch::channel(false);
        let opts = ConsumerOptions::default();
        let future = run_consumer(conn, "q", &Noop, &opts, rx);
        assert_send(&future);
    }
}
