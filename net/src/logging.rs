//! The one way every wimpy process logs: `tracing` events as text lines on
//! standard error, filtered by `--log-level` or else `RUST_LOG`.
//!
//! Libraries only emit events; a binary calls [`init`] once, first thing
//! in `main`.

use tracing_subscriber::EnvFilter;

/// Installs the process's log subscriber. `level` is what `--log-level`
/// gave (a level such as `info`, or any `RUST_LOG` filter such as
/// `wimpy_worker=debug,warn`); without it `RUST_LOG` decides, and without
/// that `default` does. Fails on a filter that does not parse.
pub fn init(level: Option<&str>, default: &str) -> Result<(), String> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).map_err(|e| format!("{level:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, plain text for a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init()
        .map_err(|e| e.to_string())
}
