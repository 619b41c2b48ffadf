/// The most webhooks that may exist at once (`WEBHOOKS_MAX`). Every live
/// webhook counts, a disabled one too (enabling it takes no new place);
/// deleting one frees its place. A limit lowered below the webhooks that
/// exist deletes none: it refuses registrations until enough are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookLimit {
    max: u32,
}

/// A registration refused because the limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at most {max} webhooks may exist; delete one to register another")]
pub struct WebhookLimitReached {
    pub max: u32,
}

impl WebhookLimit {
    pub const fn new(max: u32) -> Self {
        Self { max }
    }

    pub const fn max(self) -> u32 {
        self.max
    }

    /// Whether one more webhook may be registered while `live` exist.
    pub fn admits_another(self, live: usize) -> Result<(), WebhookLimitReached> {
        if live < self.max as usize {
            Ok(())
        } else {
            Err(WebhookLimitReached { max: self.max })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_limit_another_is_admitted() {
        let limit = WebhookLimit::new(3);
        assert_eq!(limit.admits_another(0), Ok(()));
        assert_eq!(limit.admits_another(2), Ok(()));
    }

    #[test]
    fn at_the_limit_or_above_it_another_is_refused_naming_the_limit() {
        let limit = WebhookLimit::new(3);
        // Above it: the limit was lowered below the webhooks that exist.
        for live in [3, 4] {
            assert_eq!(
                limit.admits_another(live),
                Err(WebhookLimitReached { max: 3 }),
                "{live}"
            );
        }
        assert_eq!(
            WebhookLimitReached { max: 3 }.to_string(),
            "at most 3 webhooks may exist; delete one to register another"
        );
    }
}
