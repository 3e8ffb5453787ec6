//! `wimpy-worker`: serves one FAWN-DS store and keeps itself on the master's
//! ring. Parses flags, binds, and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use wimpy_worker::membership;
use wimpy_worker::server::{WorkerState, run};
use wimpy_worker::store::{Options, Store, SyncMode};

/// Serve a wimpy worker.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address of the master.
    #[arg(long, env = "WIMPY_MASTER", default_value = "127.0.0.1:7070")]
    master: SocketAddr,
    /// Address to serve RPC on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Data directory: the store and this worker's id.
    #[arg(long)]
    data: PathBuf,
    /// When writes reach flash: always, interval:MS or never.
    #[arg(long, default_value = "always")]
    sync: SyncMode,
    /// Keys to size the in-memory index for (it grows past this).
    #[arg(long, default_value_t = 1 << 20)]
    expected_keys: u64,
    /// Threads serving RPC (default: one per core).
    #[arg(long)]
    cores: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let opts = Options { sync: args.sync, expected_keys: args.expected_keys, ..Options::default() };
    let store = Arc::new(Store::open(&args.data, opts).context("opening the store")?);
    let report = store.recovery_report();
    eprintln!(
        "wimpy-worker: store open: {} keys, replayed {} records, {} truncation(s) in {:?}",
        report.live_keys,
        report.replayed_records,
        report.truncations.len(),
        report.duration
    );
    let cores = args.cores.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let address = listener.local_addr()?.to_string();
        let master = connect_with_retry(args.master).await;
        let (id, every) = membership::register(&master, membership::load_id(&args.data)?, &address)
            .await
            .context("registering with the master")?;
        membership::save_id(&args.data, id)?;
        let state = Arc::new(WorkerState::new(id, store));
        state.set_ring(membership::fetch_ring(&master).await?);
        eprintln!("wimpy-worker: id {id} serving on {address}, master {}", args.master);
        let server = tokio::task::spawn_local(run(listener, state.clone(), cores, async {
            let _ = tokio::signal::ctrl_c().await;
        }));
        let heartbeat = tokio::task::spawn_local({
            let state = state.clone();
            let master_addr = args.master;
            async move {
                let mut master = master;
                loop {
                    if let Err(e) = membership::heartbeat_loop(&master, &state, &address, every).await {
                        eprintln!("wimpy-worker: lost the master ({e}); reconnecting");
                        master = connect_with_retry(master_addr).await;
                    }
                }
            }
        });
        server.await??;
        heartbeat.abort();
        eprintln!("wimpy-worker: shut down");
        anyhow::Ok(())
    })
}

/// Connects to the master, retrying with backoff until it answers.
async fn connect_with_retry(addr: SocketAddr) -> wimpy_schema::wimpy_capnp::master::Client {
    let mut wait = Duration::from_millis(50);
    loop {
        match membership::connect_master(addr).await {
            Ok(c) => return c,
            Err(e) => {
                eprintln!("wimpy-worker: master {addr} unreachable ({e}); retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}
