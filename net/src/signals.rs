//! The signals that stop a wimpy process cleanly: SIGINT (Ctrl-C) and
//! SIGTERM (what service managers send).

use std::future::Future;

/// Installs the SIGINT and SIGTERM handlers at once (inside a tokio
/// runtime), and resolves when either signal arrives. Call it before the
/// process says it is up: from then on neither signal can kill it before it
/// has closed what it holds. If the handlers cannot be installed, it
/// resolves at once rather than leave a process that cannot be stopped
/// cleanly.
pub fn shutdown() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
    async move {
        let (mut interrupt, mut terminate) = match handlers {
            Ok(handlers) => handlers,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGINT and SIGTERM handlers; stopping");
                return;
            }
        };
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        }
    }
}
