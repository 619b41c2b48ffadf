//! Webhook delivery, at least once, signed per Standard Webhooks.
//!
//! Two halves joined by the `webhook_deliveries` table:
//! - [`enqueue`]: the `worker.webhooks` consumer writes one row per (event,
//!   webhook subscribed to it when it was published), idempotently, and only
//!   then acknowledges the message;
//! - [`dispatch`]: one task per endpoint with due rows claims a few of them
//!   (`FOR UPDATE SKIP LOCKED`, the claim moving `next_attempt_at` a lease
//!   ahead), sends them ([`send`]) and records each attempt ([`queue`]),
//!   scheduling a failure again with backoff and jitter ([`retry`]) until it
//!   is dead.
//!
//! A slow or dead receiver holds only its own task and its own rows: other
//! endpoints, the lockout consumer and the read models never wait for it. A
//! worker that dies mid-delivery leaves its claimed rows due again once the
//! lease ends, so nothing is lost (and the receiver may see an event twice,
//! with the same `webhook-id`).

mod body;
pub mod dispatch;
pub mod enqueue;
pub mod metrics;
pub mod queue;
pub mod retry;
pub mod send;
pub mod settings;
pub mod signing;

pub use dispatch::Dispatcher;
pub use enqueue::Enqueue;
pub use settings::WebhookSettings;
