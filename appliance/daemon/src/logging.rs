//! tracing set-up: journald under systemd, human-readable stderr otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `RUST_LOG` wins over the configured filter so a developer can turn up one module without
/// editing the box's configuration.
pub fn init(configured_filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(configured_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal; then log natively
    // (structured fields, priorities) instead of as text lines.
    let journald = std::env::var_os("JOURNAL_STREAM").and_then(|_| tracing_journald::layer().ok());
    let registry = tracing_subscriber::registry().with(filter);
    match journald {
        Some(layer) => registry.with(layer).init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
    }
}
