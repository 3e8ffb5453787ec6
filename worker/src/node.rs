//! A whole worker process, as a library call: open the store, register with
//! the master, serve RPC, heartbeat, until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::membership;
use crate::server::intake::IntakeLimits;
use crate::server::{WorkerState, run as serve};
use wimpy_net::{Peer, Security};
use wimpy_store::{Options, Store};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The master to register with.
    pub master: SocketAddr,
    /// Data directory: the store and the worker's id.
    pub data: PathBuf,
    /// Store settings.
    pub store: Options,
    /// Threads serving RPC.
    pub cores: usize,
    /// Compute backends and limits.
    pub compute: wimpy_compute::EngineConfig,
    /// How much the worker takes in at once.
    pub intake: IntakeLimits,
    /// TLS for every connection it serves and opens, or insecure.
    pub security: Security,
}

/// Runs a worker on `listener` until `shutdown` resolves, then stops
/// serving, stops the compute engine and closes the store. Must run inside
/// a `LocalSet` on a current-thread runtime.
///
/// `shutdown` is heeded at every stage, also while the master cannot be
/// reached yet; whatever stage it stops, the store is closed and a failure
/// to close it (its last flush or checkpoint) is the error returned.
pub async fn run(
    listener: TcpListener,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.data)?;
    let store = Store::open(&config.data, config.store.clone())
        .map_err(|e| std::io::Error::other(format!("opening the store: {e}")))?;
    log_recovery(store.recovery_report());
    // Probing a GPU can take a while (driver start-up); not on the RPC
    // thread, and before registering: the master counts a worker as
    // serving from its registration on.
    let compute = config.compute.clone();
    let engine = tokio::task::spawn_blocking(move || wimpy_compute::Engine::start(&compute))
        .await
        .map_err(std::io::Error::other)?;
    let names: Vec<String> = engine
        .backends()
        .iter()
        .map(|b| format!("{} ({}{})", b.kind, b.device, if b.software { ", software" } else { "" }))
        .collect();
    tracing::info!("compute backends: {}", names.join(", "));
    for f in engine.failures() {
        tracing::info!("compute backend {} unavailable: {}", f.kind, f.reason);
    }
    tokio::pin!(shutdown);
    let joined = tokio::select! {
        joined = join(&listener, &config) => joined,
        () = &mut shutdown => {
            tracing::info!("stopped before joining the cluster");
            return store.close().map_err(|e| std::io::Error::other(format!("closing the store: {e}")));
        }
    };
    let (master, master_peer, registered) = match joined {
        Ok(joined) => joined,
        Err(e) => {
            if let Err(close) = store.close() {
                tracing::error!(error = %close, "closing the store");
            }
            return Err(e);
        }
    };
    let state = Arc::new(WorkerState::new(registered.id, store, Arc::new(engine)).with_intake(config.intake));
    state.registered_with(&master_peer);
    state.set_lease_length(registered.lease);
    let every = registered.every;
    match membership::fetch_ring(&master).await {
        Ok(ring) => {
            let epoch = ring.epoch;
            state.set_ring(ring);
            // The master's ring, fetched after it answered the
            // registration: the lease runs from that, so the worker serves
            // from the start rather than from its first heartbeat's answer.
            state.renew_lease(registered.sent, epoch);
        }
        // The first heartbeat fetches it again.
        Err(e) => tracing::warn!(error = %e, "fetching the ring after registering"),
    }
    let address = listener.local_addr()?.to_string();
    let heartbeat = tokio::task::spawn_local({
        let state = state.clone();
        let master_addr = config.master;
        let security = config.security.clone();
        async move {
            let mut master = master;
            loop {
                if let Err(e) = membership::heartbeat_loop(&master, &state, &address, every).await {
                    tracing::warn!(error = %e, "lost the master; reconnecting");
                    // Not in a tight loop: a master that refuses this worker
                    // (it left the cluster) would be hammered otherwise.
                    tokio::time::sleep(every.max(Duration::from_millis(500))).await;
                    let peer;
                    (master, peer) = connect_with_retry(master_addr, &security).await;
                    state.registered_with(&peer);
                }
            }
        }
    });
    let (stop_healing, healing_stopped) = tokio::sync::watch::channel(());
    let healer = tokio::task::spawn_local(keep_store_in_service(state.clone(), healing_stopped));
    let served = serve(listener, state.clone(), config.security.clone(), config.cores, shutdown).await;
    // The healer stops between attempts, never halfway through a reopen.
    drop(stop_healing);
    if healer.await.is_err() {
        tracing::error!("the store's healer failed");
    }
    heartbeat.abort();
    // The aborted task drops its hold on the state once it is awaited.
    if let Err(e) = heartbeat.await
        && !e.is_cancelled()
    {
        tracing::error!(error = %e, "the heartbeat task failed");
    }
    let closed = state.close().map_err(std::io::Error::other);
    served.and(closed)
}

/// How often the healer looks at whether the store still serves.
const HEALTH_CHECK_EVERY: Duration = Duration::from_millis(100);
/// The first wait before reopening a failed store; it doubles with every
/// attempt that fails, up to [`LONGEST_REOPEN_WAIT`].
const FIRST_REOPEN_WAIT: Duration = Duration::from_millis(200);
const LONGEST_REOPEN_WAIT: Duration = Duration::from_secs(30);
/// A store that fails again sooner than this after it was reopened keeps
/// the longer wait: every reopen replays the log, which must not run in a
/// loop on a disk that fails at once every time.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Watches the store and, when a failed write or fsync poisons it, reopens
/// it with backoff until it serves again (the heartbeat meanwhile reports
/// the worker `failed`, with the reason). Returns when `stop`'s sender goes.
async fn keep_store_in_service(state: Arc<WorkerState>, mut stop: tokio::sync::watch::Receiver<()>) {
    let mut wait = FIRST_REOPEN_WAIT;
    let mut reopened_at: Option<std::time::Instant> = None;
    let mut failed = false;
    loop {
        let pause = if failed { wait } else { HEALTH_CHECK_EVERY };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        let Some(why) = state.store_slot().failure() else {
            continue;
        };
        if !failed {
            failed = true;
            tracing::error!(failure = why, "the store failed; it refuses every call until it is reopened");
            if reopened_at.is_some_and(|t| t.elapsed() < STABLE_AFTER) {
                // Failed again soon after a reopen: wait before replaying
                // the log once more.
                wait = (wait * 2).min(LONGEST_REOPEN_WAIT);
                continue;
            }
            wait = FIRST_REOPEN_WAIT;
        }
        let slot = state.store_slot().clone();
        match tokio::task::spawn_blocking(move || slot.heal()).await {
            Ok(Ok(Some(report))) => {
                tracing::info!("reopened the store after its failure; it serves again");
                log_recovery(&report);
                failed = false;
                reopened_at = Some(std::time::Instant::now());
            }
            Ok(Ok(None)) => failed = false,
            Ok(Err(why)) => {
                wait = (wait * 2).min(LONGEST_REOPEN_WAIT);
                tracing::warn!(retry_in = ?wait, "the store is still out of service: {why}");
            }
            Err(e) => tracing::error!(error = %e, "reopening the store panicked"),
        }
    }
}

/// Says what opening the store found: how much it replayed, and every torn
/// tail it cut and every damaged span it stepped over.
fn log_recovery(report: &wimpy_store::RecoveryReport) {
    tracing::info!(
        keys = report.live_keys,
        replayed_records = report.replayed_records,
        checkpoint = report.checkpoint_used,
        "store opened in {:?}",
        report.duration
    );
    for t in &report.truncations {
        tracing::warn!(
            segment = t.segment,
            offset = t.at,
            bytes = t.dropped_bytes,
            reason = t.reason,
            "cut a torn log tail"
        );
    }
    for d in &report.damage {
        tracing::error!(
            segment = d.segment,
            offset = d.at,
            bytes = d.bytes,
            reason = d.reason,
            "stepped over a damaged record: it is lost, the records after it are kept"
        );
    }
    for name in &report.set_aside {
        tracing::warn!("set aside {name}");
    }
}

/// Registers `listener`'s address with the master (under the id this data
/// directory kept, if any) and keeps the id it gives: the master's
/// connection, who answered, and what it said.
async fn join(
    listener: &TcpListener,
    config: &WorkerConfig,
) -> std::io::Result<(wimpy_schema::wimpy_capnp::master::Client, Peer, membership::Registered)> {
    let address = listener.local_addr()?.to_string();
    let (master, peer) = connect_with_retry(config.master, &config.security).await;
    let registered = membership::register(&master, membership::load_id(&config.data)?, &address)
        .await
        .map_err(|e| std::io::Error::other(format!("registering with the master: {e}")))?;
    membership::save_id(&config.data, registered.id)?;
    Ok((master, peer, registered))
}

/// Connects to the master, retrying with backoff until it answers. Says
/// why it cannot (a master down, or one this worker's credentials do not
/// let it reach) once it has failed for a few seconds (a master starting
/// beside its workers is not worth a warning), and every half minute after.
async fn connect_with_retry(
    addr: SocketAddr,
    security: &Security,
) -> (wimpy_schema::wimpy_capnp::master::Client, Peer) {
    let mut wait = Duration::from_millis(20);
    let started = std::time::Instant::now();
    let mut said: Option<std::time::Instant> = None;
    loop {
        match membership::connect_master(addr, security).await {
            Ok(c) => return c,
            Err(e) => {
                if started.elapsed() >= Duration::from_secs(5)
                    && said.is_none_or(|at| at.elapsed() >= Duration::from_secs(30))
                {
                    tracing::warn!(error = %e, "cannot reach the master at {addr}; retrying");
                    said = Some(std::time::Instant::now());
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}
