//! A whole worker process, as a library call: open the store, register with
//! the master, serve RPC, heartbeat, until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::membership;
use crate::server::{WorkerState, run as serve};
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
}

/// Runs a worker on `listener` until `shutdown` resolves. Must run inside a
/// `LocalSet` on a current-thread runtime.
pub async fn run(
    listener: TcpListener,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.data)?;
    let store = Arc::new(
        Store::open(&config.data, config.store.clone())
            .map_err(|e| std::io::Error::other(format!("opening the store: {e}")))?,
    );
    let address = listener.local_addr()?.to_string();
    let master = connect_with_retry(config.master).await;
    let (id, every) = membership::register(&master, membership::load_id(&config.data)?, &address)
        .await
        .map_err(|e| std::io::Error::other(format!("registering with the master: {e}")))?;
    membership::save_id(&config.data, id)?;
    // Probing a GPU can take a while (driver start-up); not on the RPC thread.
    let compute = config.compute.clone();
    let engine = tokio::task::spawn_blocking(move || wimpy_compute::Engine::start(&compute))
        .await
        .map_err(std::io::Error::other)?;
    let names: Vec<String> = engine
        .backends()
        .iter()
        .map(|b| format!("{} ({}{})", b.kind, b.device, if b.software { ", software" } else { "" }))
        .collect();
    eprintln!("wimpy-worker: compute backends: {}", names.join(", "));
    for f in engine.failures() {
        eprintln!("wimpy-worker: compute backend {} unavailable: {}", f.kind, f.reason);
    }
    let state = Arc::new(WorkerState::new(id, store, Arc::new(engine)));
    if let Ok(ring) = membership::fetch_ring(&master).await {
        state.set_ring(ring);
    }
    let heartbeat = tokio::task::spawn_local({
        let state = state.clone();
        let address = address.clone();
        let master_addr = config.master;
        async move {
            let mut master = master;
            loop {
                if let Err(e) = membership::heartbeat_loop(&master, &state, &address, every).await {
                    // Not in a tight loop: a master that refuses this worker
                    // (it left the cluster) would be hammered otherwise.
                    eprintln!("wimpy-worker: master: {e}");
                    tokio::time::sleep(every.max(Duration::from_millis(500))).await;
                    master = connect_with_retry(master_addr).await;
                }
            }
        }
    });
    let served = serve(listener, state, config.cores, shutdown).await;
    heartbeat.abort();
    served
}

/// Connects to the master, retrying with backoff until it answers.
async fn connect_with_retry(addr: SocketAddr) -> wimpy_schema::wimpy_capnp::master::Client {
    let mut wait = Duration::from_millis(20);
    loop {
        match membership::connect_master(addr).await {
            Ok(c) => return c,
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}
