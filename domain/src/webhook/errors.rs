/// Business-rule rejections of a [`WebhookCommand`](super::WebhookCommand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook already exists")]
    AlreadyExists,
    /// Also every command on a deleted webhook.
    #[error("webhook not found")]
    NotFound,
}
