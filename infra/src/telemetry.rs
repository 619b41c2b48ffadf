use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{fmt, EnvFilter};

use crate::settings::LogFormat;

/// Installs the global subscriber, logging to standard output. `RUST_LOG`
/// overrides the default `info` level. Calling it twice (as tests do)
/// keeps the first subscriber.
pub fn init(format: LogFormat) {
    install(format, std::io::stdout);
}

/// As [`init`], logging to standard error: for one-shot commands whose
/// standard output is their result (a script reads it).
pub fn init_on_stderr(format: LogFormat) {
    install(format, std::io::stderr);
}

fn install<W>(format: LogFormat, writer: W)
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
