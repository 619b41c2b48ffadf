use tracing_subscriber::{fmt, EnvFilter};

use crate::settings::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level.
/// Calling it twice (as tests do) keeps the first subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
