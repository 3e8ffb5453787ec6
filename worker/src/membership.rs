//! Keeping a worker on the ring: register with the master, heartbeat, and
//! adopt each new ring epoch the master announces.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wimpy_net::deadline::{CALL, within};
use wimpy_net::{Peer, Role, Security};
use wimpy_schema::wimpy_capnp::{heartbeat_answer, master};
use wimpy_schema::{Failure, RingInfo, WorkerId};

use crate::server::WorkerState;

/// File in the data directory that keeps the worker's id across restarts.
pub const ID_FILE: &str = "worker.id";

/// The id this data directory belongs to (0 if it has none yet).
pub fn load_id(data: &Path) -> std::io::Result<WorkerId> {
    match std::fs::read_to_string(data.join(ID_FILE)) {
        Ok(s) => s.trim().parse().map_err(|e| std::io::Error::other(format!("{}: {e}", ID_FILE))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Records the id the master gave this data directory, durably.
pub fn save_id(data: &Path, id: WorkerId) -> std::io::Result<()> {
    let tmp = data.join(format!("{ID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, data.join(ID_FILE))?;
    std::fs::File::open(data)?.sync_all()
}

/// Connects to the master (over TLS, a peer whose certificate is for the
/// master role), and says who answered. Must run inside a `LocalSet`.
pub async fn connect_master(addr: SocketAddr, security: &Security) -> std::io::Result<(master::Client, Peer)> {
    wimpy_net::connect_to(&addr.to_string(), security, &[Role::Master]).await
}

/// What the master answers a worker that registers.
#[derive(Debug, Clone, Copy)]
pub struct Registered {
    /// The id to keep.
    pub id: WorkerId,
    /// How often to heartbeat.
    pub every: Duration,
    /// How long an answered heartbeat lets the worker act in its chains
    /// (`None`: a master that grants no lease).
    pub lease: Option<Duration>,
    /// When the registration was sent: the master, which answered it, marks
    /// the worker down no sooner than its failure timeout after that, so a
    /// lease may run from here as from an answered heartbeat.
    pub sent: std::time::Instant,
}

/// Registers `address` (with the id kept from an earlier run, or 0).
pub async fn register(master: &master::Client, id: WorkerId, address: &str) -> Result<Registered, capnp::Error> {
    let sent = std::time::Instant::now();
    let mut req = master.register_request();
    req.get().set_id(id);
    req.get().set_address(address);
    let resp = within(CALL, "register", req.send().promise).await?;
    let r = resp.get()?;
    if r.has_refused() {
        let refused = Failure::read(r.get_refused()?)?;
        return Err(capnp::Error::failed(format!("the master refused to register this worker: {refused:?}")));
    }
    Ok(Registered {
        id: r.get_id(),
        every: Duration::from_millis(u64::from(r.get_heartbeat_millis().max(10))),
        lease: (r.get_lease_millis() > 0).then(|| Duration::from_millis(u64::from(r.get_lease_millis()))),
        sent,
    })
}

/// Fetches the master's ring.
pub async fn fetch_ring(master: &master::Client) -> Result<RingInfo, capnp::Error> {
    let resp = within(CALL, "ring", master.ring_request().send().promise).await?;
    RingInfo::read(resp.get()?.get_ring()?)
}

/// Heartbeats until the connection fails; follows the master's epoch (a
/// newer ring, or back to the master's from one ahead of it), confirms it
/// (so keys of ranges given away are dropped), and registers again if the
/// master forgot this worker (it restarted).
pub async fn heartbeat_loop(
    master: &master::Client,
    state: &Arc<WorkerState>,
    address: &str,
    every: Duration,
) -> Result<(), capnp::Error> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sent = std::time::Instant::now();
        let mut req = master.heartbeat_request();
        req.get().set_id(state.id);
        state.figures().write(req.get().init_stats());
        req.get().set_store_failure(state.store_slot().failure().unwrap_or_default().as_str());
        let answer = within(CALL, "heartbeat", req.send().promise).await?;
        let epoch = match answer.get()?.which()? {
            heartbeat_answer::Epoch(epoch) => epoch,
            heartbeat_answer::UnknownMember(()) => {
                tracing::info!("the master does not know this worker (it restarted?); registering again");
                state.set_lease_length(register(master, state.id, address).await?.lease);
                continue;
            }
            heartbeat_answer::Refused(refused) => {
                let refused = Failure::read(refused?)?;
                return Err(capnp::Error::failed(format!("the master refused this worker's heartbeat: {refused:?}")));
            }
        };
        if epoch != state.ring().epoch() {
            state.follow_master(fetch_ring(master).await?);
        }
        state.renew_lease(sent, epoch);
        state.confirm_epoch(epoch);
    }
}
