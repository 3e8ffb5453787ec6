//! The signals that stop a wimpy process cleanly: SIGINT (Ctrl-C) and
//! SIGTERM (what service managers send).

/// Resolves when the process is asked to stop. If the signal handlers
/// cannot be installed, it resolves at once rather than leave a process
/// that cannot be stopped cleanly.
pub async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (interrupt, terminate) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install the SIGINT and SIGTERM handlers; stopping");
            return;
        }
    };
    let (mut interrupt, mut terminate) = (interrupt, terminate);
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
    }
}
