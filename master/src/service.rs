//! The master's RPC service, and the loop that serves it.
//!
//! Membership is small and changes rarely, so the master runs on one thread:
//! a `LocalSet` holds every connection and the failure detector, and the
//! table sits in a `RefCell` no other thread can reach.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::collections::{BTreeMap, BTreeSet};
use tokio::net::TcpListener;

use wimpy_schema::WorkerId;
use wimpy_schema::wimpy_capnp::{master, member, ring_info, scrub_report, worker, worker_admin};

use crate::membership::{Change, MemberState, MemberStats, Membership};
use crate::proxy::{CacheConfig, Proxy, Route};
use crate::rebalance;
use crate::scrub::{self, ScrubConfig};
use crate::state::{Found, StateFile};
use std::sync::Arc;
use wimpy_net::deadline::{CALL, within};

use wimpy_net::security::join::{self, JoinToken};
use wimpy_net::security::{CertRequest, ClusterCa};
use wimpy_net::{Peer, Role, Security};
use wimpy_schema::batch::{KeyAnswer, read_requests, write_answers};
use wimpy_schema::{Failure, MoveChange, StorageKind};

/// How the master runs.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// Virtual nodes per worker on the ring.
    pub vnodes: u32,
    /// Copies of each key: the length of each key's chain (writes enter at
    /// its head and are acknowledged once its tail holds them).
    pub replicas: u32,
    /// How often workers are told to heartbeat.
    pub heartbeat: Duration,
    /// Silence after which a worker counts as down. Several heartbeats, so
    /// one delayed packet does not take a worker's keys offline.
    pub down_after: Duration,
    /// Where the master keeps its membership (see [`crate::state`]): a
    /// restarted master resumes the same members, ring and epoch, so that
    /// no key changes owner because the master went away. Without it (in
    /// tests) a restart starts a new cluster.
    pub data: Option<std::path::PathBuf>,
    /// The proxy's hot-key cache.
    pub cache: CacheConfig,
    /// TLS for every connection it serves and opens, or insecure.
    pub security: Security,
    /// The cluster's CA, to sign joining workers' certificates with
    /// (`Master.join`); `None`: workers are issued certificates by hand.
    /// The security should then accept peers without a certificate
    /// ([`Security::tls_accepting_joins`]), or no joining node gets in.
    pub signer: Option<Arc<ClusterCa>>,
    /// The most bytes per second each worker sends while it copies ranges
    /// to a member that takes them on (a join, a return, a leave or a
    /// removal), so that the copy leaves its disk and link to the clients;
    /// 0 for no cap. Only the copy made while writes go on keeps to it:
    /// the last one, which holds writes back, goes as fast as it can.
    pub repair_bytes_per_second: u64,
    /// How often the scrub compares the copies of every chain, and how
    /// fast it may read (see [`crate::scrub`]).
    pub scrub: ScrubConfig,
    /// Silence after which a member down is removed, as `wimpy remove`
    /// does, where the others can take its place in its chains
    /// ([`Membership::overdue`]); zero for never.
    pub remove_down_after: Duration,
}

/// The default of [`MasterConfig::repair_bytes_per_second`]: about half of
/// what an SD card in a Pi writes in sequence.
pub const DEFAULT_REPAIR_BYTES_PER_SECOND: u64 = 8_000_000;

impl MasterConfig {
    /// The defaults, securing connections with `security`.
    pub fn new(security: Security) -> MasterConfig {
        MasterConfig {
            vnodes: wimpy_schema::ring::DEFAULT_VNODES,
            replicas: wimpy_schema::ring::DEFAULT_REPLICAS,
            heartbeat: Duration::from_millis(500),
            down_after: Duration::from_secs(2),
            data: None,
            cache: CacheConfig::default(),
            security,
            signer: None,
            repair_bytes_per_second: DEFAULT_REPAIR_BYTES_PER_SECOND,
            scrub: ScrubConfig::default(),
            remove_down_after: Duration::ZERO,
        }
    }
}

/// Serves the master on `listener` until `shutdown` resolves. Must run on a
/// current-thread runtime (capnp-rpc objects stay on one thread).
pub async fn run(
    listener: TcpListener,
    config: MasterConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (state, found) = match &config.data {
        Some(dir) => {
            let (file, found) = StateFile::open(dir)?;
            (Some(file), found)
        }
        None => (None, Found::Nothing),
    };
    let (membership, awaiting) = resume(&config, found);
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let service = Rc::new(MasterService {
                membership: RefCell::new(membership),
                heartbeat: config.heartbeat,
                state,
                awaiting: RefCell::new(awaiting),
                proxy: Proxy::new(config.cache.clone(), config.security.clone()),
                security: config.security.clone(),
                signer: config.signer.clone(),
                changing: tokio::sync::Mutex::new(()),
                moving: Default::default(),
                repair_bytes_per_second: config.repair_bytes_per_second,
                scrub: config.scrub,
                scrubbed: Default::default(),
                scrubbing: Default::default(),
            });
            if let Err(e) = service.persist() {
                return Err(std::io::Error::other(format!("saving the master's state: {e}")));
            }
            if !service.awaiting.borrow().is_empty() {
                // A move cut short may have left fences up: nothing moves now.
                tokio::task::spawn_local(lift_fences(service.clone()));
            }
            // Members that were catching up go on doing so.
            let returning: Vec<WorkerId> = service
                .membership
                .borrow()
                .members()
                .filter(|m| m.state == MemberState::Returning)
                .map(|m| m.id)
                .collect();
            for id in returning {
                tokio::task::spawn_local(join(service.clone(), id));
            }
            let scrubber = (!config.scrub.every.is_zero()).then(|| {
                let service = service.clone();
                tokio::task::spawn_local(async move {
                    loop {
                        tokio::time::sleep(service.scrub.every).await;
                        if let Err(why) = service.clone().scrub_pass().await {
                            tracing::info!("no scrub pass now: {why}; the next in {:?}", service.scrub.every);
                        }
                    }
                })
            });
            // The failure detector looks several times per timeout, so a
            // dead worker is marked down within about 1.25 timeouts.
            let sweeper = {
                let every = (config.down_after / 4).max(Duration::from_millis(10));
                let (service, remove_down_after) = (service.clone(), config.remove_down_after);
                tokio::task::spawn_local(async move {
                    let mut tick = tokio::time::interval(every);
                    let removing = Rc::new(RefCell::new(BTreeSet::new()));
                    loop {
                        tick.tick().await;
                        if !remove_down_after.is_zero() {
                            remove_overdue(&service, remove_down_after, &removing);
                        }
                        if service.membership.borrow_mut().sweep(Instant::now()) {
                            service.heard_or_down();
                            if let Err(e) = service.persist() {
                                tracing::error!(error = %e, "saving the state after marking a member down");
                            }
                            // With more than one copy the chains close over
                            // it at once: its keys are served again as soon
                            // as the members hear.
                            tokio::task::spawn_local(push_ring(service.clone()));
                        }
                    }
                })
            };
            tokio::pin!(shutdown);
            let result = loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let (service, security) = (service.clone(), config.security.clone());
                            tokio::task::spawn_local(async move {
                                // Peers hang up as they please: worth a debug line, no more.
                                if let Err(e) = serve_connection(stream, service, &security).await {
                                    tracing::debug!(error = %e, "connection ended");
                                }
                            });
                        }
                        Err(e) => break Err(e),
                    },
                    _ = &mut shutdown => break Ok(()),
                }
            };
            sweeper.abort();
            if let Some(scrubber) = scrubber {
                scrubber.abort();
            }
            result
        })
        .await
}

/// The membership to start from: a new one, one going on after an earlier
/// version's epoch, or the state of the last run, with the members of its
/// ring to hear from before anything moves.
fn resume(config: &MasterConfig, found: Found) -> (Membership, BTreeSet<WorkerId>) {
    let fresh = Membership::new(config.vnodes, config.down_after).with_replicas(config.replicas);
    let snapshot = match found {
        Found::Nothing => return (fresh, BTreeSet::new()),
        Found::Epoch(epoch) => return (fresh.resume_after(epoch), BTreeSet::new()),
        Found::State(snapshot) => snapshot,
    };
    let mut membership = Membership::restore(&snapshot, config.down_after, Instant::now());
    if snapshot.vnodes != config.vnodes {
        tracing::warn!(kept = snapshot.vnodes, asked = config.vnodes, "keeping the ring's vnodes of the last run");
    }
    if snapshot.replicas != config.replicas {
        // Changing it would need every range copied anew (or dropped).
        tracing::warn!(kept = snapshot.replicas, asked = config.replicas, "keeping the copies per key of the last run");
    }
    match membership.change() {
        Some(Change::Leave(id)) => {
            tracing::warn!("the leave of worker {id} was cut short by the restart: it stays a member; run it again")
        }
        Some(Change::Join(id)) => {
            tracing::info!(
                "the join of worker {id} was cut short by the restart: it goes on when the worker comes back"
            )
        }
        None => {}
    }
    // Nothing moves now: whatever did is finished by the join it belongs
    // to, or undone.
    membership.set_change(None);
    let awaiting = membership.members().filter(|m| m.state == MemberState::Serving).map(|m| m.id).collect();
    tracing::info!(
        epoch = membership.epoch(),
        members = membership.members().count(),
        "restored the membership of the last run; waiting to hear from its workers"
    );
    (membership, awaiting)
}

/// Lifts every fence a move cut short by the master's restart left on its
/// workers (they lapse by themselves, but only after their lease).
async fn lift_fences(service: Rc<MasterService>) {
    let addresses: Vec<String> = service.membership.borrow().members().map(|m| m.address.clone()).collect();
    let security = &service.security;
    let lifts = addresses.iter().map(|address| async move {
        let lifted = async {
            let w = connect_worker(address, security).await?;
            let mut req = w.fence_request();
            req.get().init_ranges(0);
            within(CALL, "fence", req.send().promise).await.map(drop)
        };
        if let Err(e) = lifted.await {
            tracing::debug!(worker = address, error = %e, "lifting fences after the restart");
        }
    });
    futures::future::join_all(lifts).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    service: Rc<MasterService>,
    security: &Security,
) -> std::io::Result<()> {
    wimpy_net::serve(stream, security, |peer| {
        let session: master::Client = capnp_rpc::new_client(MasterSession { service, peer: peer.clone() });
        session.client
    })
    .await
}

/// How a leave that ran came out.
#[derive(Debug)]
enum Left {
    Done,
    NotMember,
    LastOnRing,
}

struct MasterService {
    membership: RefCell<Membership>,
    heartbeat: Duration,
    /// Where the membership is kept (none without a data directory).
    state: Option<StateFile>,
    /// After a restart, the members of the restored ring not heard from
    /// yet: no change moves data until each has been heard or marked down.
    awaiting: RefCell<BTreeSet<WorkerId>>,
    proxy: Proxy,
    /// What its connections to workers present and expect.
    security: Security,
    /// The CA, when this master signs joining workers' certificates.
    signer: Option<Arc<ClusterCa>>,
    /// Held by a membership change for as long as it moves data, so that
    /// changes never plan against a ring another change is replacing.
    changing: tokio::sync::Mutex<()>,
    /// How far the copy of the change under way has got.
    moving: rebalance::ProgressCell,
    repair_bytes_per_second: u64,
    scrub: ScrubConfig,
    /// The last scrub pass's report.
    scrubbed: RefCell<scrub::Report>,
    /// Whether a scrub pass runs now.
    scrubbing: std::cell::Cell<bool>,
}

/// Clears a flag when what set it ends, however it ends.
struct ResetOnDrop<'a>(&'a std::cell::Cell<bool>);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Clears a change's progress when the change ends, however it ends.
struct ClearOnDrop<'a>(&'a rebalance::ProgressCell);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        *self.0.borrow_mut() = None;
    }
}

/// Moves a joining worker's ranges to it and puts it on the ring; retries
/// (with backoff) while the worker is still registered and joining.
async fn join(service: Rc<MasterService>, id: WorkerId) {
    let mut pause = Duration::from_millis(100);
    // A restarted master changes nothing before it has heard from the
    // members of its last ring (or marked them down).
    while !service.awaiting.borrow().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let _changing = service.changing.lock().await;
        let (before, after, addresses, kind) = {
            let m = service.membership.borrow();
            let kind = match m.member(id).map(|x| x.state) {
                Some(MemberState::Joining) => MoveChange::Join,
                Some(MemberState::Returning) => MoveChange::Return,
                _ => return, // gone, serving, or down again
            };
            let addresses: BTreeMap<WorkerId, (String, MemberState)> =
                m.members().map(|x| (x.id, (x.address.clone(), x.state))).collect();
            (m.ring(), m.ring_with(id), addresses, kind)
        };
        let plan = rebalance::moves_for_change(&before, &after);
        service.membership.borrow_mut().set_change(Some(Change::Join(id)));
        if let Err(e) = service.persist() {
            tracing::error!(error = %e, "saving the state before worker {id}'s join");
        }
        let done = service.run_plan(&plan, &addresses, id, kind).await;
        service.membership.borrow_mut().set_change(None);
        match done {
            Ok(copied) => {
                if service.membership.borrow_mut().promote(id) {
                    tracing::info!("worker {id} joined with {copied} records");
                }
                if let Err(e) = service.persist() {
                    tracing::error!(error = %e, "saving the state after worker {id}'s join");
                }
                drop(_changing);
                push_ring(service.clone()).await;
                return;
            }
            Err(e) => {
                if let Err(e) = service.persist() {
                    tracing::error!(error = %e, "saving the state after worker {id}'s join failed");
                }
                tracing::warn!(error = %e, "join of worker {id} failed; retrying in {pause:?}");
            }
        }
        drop(_changing);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Connects to every worker a plan names, refusing plans that need a
/// worker that is down.
async fn connect_plan(
    plan: &[rebalance::Move],
    addresses: &BTreeMap<WorkerId, (String, MemberState)>,
    security: &Security,
) -> Result<BTreeMap<WorkerId, worker_admin::Client>, capnp::Error> {
    let mut clients = BTreeMap::new();
    for id in plan.iter().flat_map(|m| [m.from, m.to]) {
        if clients.contains_key(&id) {
            continue;
        }
        let Some((addr, state)) = addresses.get(&id) else {
            return Err(capnp::Error::failed(format!("worker {id} is no longer a member")));
        };
        if !state.is_up() {
            return Err(capnp::Error::failed(format!("worker {id} is {state}")));
        }
        clients.insert(id, connect_worker(addr, security).await?);
    }
    Ok(clients)
}

/// The membership calls of the worker at `address`, which hands them only
/// to the master (`Worker.admin`).
async fn connect_worker(address: &str, security: &Security) -> Result<worker_admin::Client, capnp::Error> {
    let w: worker::Client = wimpy_net::connect(address, security, &[Role::Worker])
        .await
        .map_err(|e| capnp::Error::disconnected(format!("{address}: {e}")))?;
    let answer = within(CALL, "admin", w.admin_request().send().promise).await?;
    let answer = answer.get()?;
    if answer.has_refused() {
        let refused = Failure::read(answer.get_refused()?)?;
        return Err(capnp::Error::failed(format!("{address} refused the membership calls: {refused:?}")));
    }
    answer.get_admin()
}

/// Tells every reachable member about the current ring at once, rather than
/// at their next heartbeat, so fences lift and clients settle quickly.
async fn push_ring(service: Rc<MasterService>) {
    let members: Vec<String> = service
        .membership
        .borrow()
        .members()
        .filter(|m| m.state != MemberState::Down)
        .map(|m| m.address.clone())
        .collect();
    // All at once: one hung member must not hold the ring back from the rest.
    let pushes = members.iter().map(|address| {
        let service = &service;
        async move {
            // A member missed here hears of the ring at its next heartbeat.
            if let Err(e) = send_ring(service, address).await {
                tracing::info!(worker = address, error = %e, "pushing the ring; it goes out with the next heartbeat");
            }
        }
    });
    futures::future::join_all(pushes).await;
}

/// Sends the current ring to the worker at `address`.
async fn send_ring(service: &MasterService, address: &str) -> Result<(), capnp::Error> {
    let w = connect_worker(address, &service.security).await?;
    let mut req = w.set_ring_request();
    write_ring(req.get().init_ring(), &service.membership.borrow());
    within(CALL, "setRing", req.send().promise).await.map(drop)
}

/// Starts the removal of every member down for longer than `after` that
/// the others can stand in for, unless its removal is under way already
/// (`removing`). A removal that fails (the master has not heard from every
/// worker since it restarted, a source went down) is tried again a while
/// later.
fn remove_overdue(service: &Rc<MasterService>, after: Duration, removing: &Rc<RefCell<BTreeSet<WorkerId>>>) {
    let overdue = service.membership.borrow().overdue(Instant::now(), after);
    for id in overdue {
        if !removing.borrow_mut().insert(id) {
            continue;
        }
        let (service, removing) = (service.clone(), removing.clone());
        tokio::task::spawn_local(async move {
            tracing::warn!(worker = id, "removing a worker down for over {after:?}: its chains take on others");
            match service.leave_worker(id).await {
                Ok(Left::Done) => tracing::info!(worker = id, "removed; its chains have their copies again"),
                Ok(other) => tracing::info!(worker = id, "not removed: {other:?}"),
                Err(f) => {
                    let again = after.min(Duration::from_secs(30));
                    tracing::warn!(worker = id, "removing it failed, to be tried again in {again:?}: {f:?}");
                    tokio::time::sleep(again).await;
                }
            }
            removing.borrow_mut().remove(&id);
        });
    }
}

impl MasterService {
    /// How long a worker acts in its chains after sending a heartbeat this
    /// master answers: well inside the silence after which the master
    /// marks it down and hands its roles on (see `Master.register`).
    fn lease(&self) -> Duration {
        self.membership.borrow().down_after() * 3 / 4
    }

    /// Where `key` goes under the master's current ring.
    fn route(&self, key: &[u8]) -> Result<Route, Failure> {
        let m = self.membership.borrow();
        let ring = m.ring();
        let owner = ring.owner(key).ok_or_else(|| Failure::Unavailable("the cluster has no workers".into()))?;
        let member = m.member(owner).ok_or_else(|| Failure::Unavailable(format!("worker {owner} is unknown")))?;
        if !member.state.serves() {
            return Err(Failure::Unavailable(format!(
                "worker {owner} at {} is {} ({})",
                member.address,
                member.state,
                member.reason(Instant::now())
            )));
        }
        Ok(Route { address: member.address.clone(), epoch: ring.epoch() })
    }

    /// The work of `Master.leave`: a refusal when the leave cannot start,
    /// a `Failure` when the handover fails (the ring is then as it was).
    async fn leave_worker(self: Rc<Self>, id: WorkerId) -> Result<Left, Failure> {
        let awaiting: Vec<WorkerId> = self.awaiting.borrow().iter().copied().collect();
        if !awaiting.is_empty() {
            return Err(Failure::Unavailable(format!(
                "the master restarted and has not heard from workers {awaiting:?} yet; try again in a few seconds"
            )));
        }
        let changing = self.changing.lock().await;
        let (before, after, addresses, state) = {
            let m = self.membership.borrow();
            let Some(member) = m.member(id) else {
                return Ok(Left::NotMember);
            };
            let addresses: BTreeMap<WorkerId, (String, MemberState)> =
                m.members().map(|x| (x.id, (x.address.clone(), x.state))).collect();
            (m.ring(), m.ring_without(id), addresses, member.state)
        };
        if state != MemberState::Joining && after.is_empty() {
            return Ok(Left::LastOnRing);
        }
        let keep = |service: &Self| service.persist().map_err(|e| Failure::storage(StorageKind::Io, e.to_string()));
        if state != MemberState::Joining {
            let plan = rebalance::moves_for_change(&before, &after);
            self.membership.borrow_mut().set_change(Some(Change::Leave(id)));
            keep(&self)?;
            let kind = if state.serves() { MoveChange::Leave } else { MoveChange::Remove };
            let moved = self.run_plan(&plan, &addresses, id, kind).await;
            self.membership.borrow_mut().set_change(None);
            let moved = match moved {
                Ok(moved) => moved,
                Err(e) => {
                    keep(&self)?;
                    return Err(Failure::Unavailable(format!("handing worker {id}'s ranges over: {e}")));
                }
            };
            tracing::info!("worker {id} handed over {moved} records");
        }
        self.membership.borrow_mut().depart(id);
        keep(&self)?;
        drop(changing);
        // The leaver hears the new ring too, and forgets what it gave away.
        let leaver = addresses.get(&id).map(|a| a.0.clone());
        push_ring(self.clone()).await;
        if let Some(addr) = leaver
            && let Err(e) = send_ring(&self, &addr).await
        {
            // It no longer heartbeats; it keeps the keys it gave away until
            // it is restarted on an empty directory, which is all it may do.
            tracing::info!(worker = addr, error = %e, "telling a worker that left about the ring");
        }
        Ok(Left::Done)
    }

    /// Connects to the workers of `plan` and carries it out, giving up as
    /// soon as one of them is marked down (or leaves the membership): a hung
    /// worker must not hold up every other membership change.
    async fn run_plan(
        &self,
        plan: &[rebalance::Move],
        addresses: &BTreeMap<WorkerId, (String, MemberState)>,
        worker: WorkerId,
        kind: MoveChange,
    ) -> Result<u64, capnp::Error> {
        let involved: Vec<WorkerId> = plan.iter().flat_map(|m| [m.from, m.to]).collect();
        let live_bytes = self
            .membership
            .borrow()
            .members()
            .map(|m| (m.id, m.stats.log_bytes.saturating_sub(m.stats.garbage_bytes)))
            .collect();
        let copying = rebalance::Copying {
            bytes_per_second: self.repair_bytes_per_second,
            live_bytes,
            progress: self.moving.clone(),
            // A member back on its disk needs only what it missed.
            compare_first: kind == MoveChange::Return,
        };
        *self.moving.borrow_mut() = Some(rebalance::Progress::new(worker, kind, self.repair_bytes_per_second));
        let _clear = ClearOnDrop(&self.moving);
        let run = async {
            let clients = connect_plan(plan, addresses, &self.security).await?;
            rebalance::transfer(plan, &clients, &copying).await
        };
        tokio::select! {
            done = run => done,
            id = self.first_down(&involved) => {
                let state = self.membership.borrow().member(id).map_or("gone".to_string(), |x| x.state.to_string());
                Err(capnp::Error::disconnected(format!("worker {id} stopped serving (it is {state})")))
            }
        }
    }

    /// Resolves with the first of `ids` the failure detector marks down or
    /// failed, or forgets, looking as often as the detector itself does.
    async fn first_down(&self, ids: &[WorkerId]) -> WorkerId {
        let every = (self.membership.borrow().down_after() / 4).max(Duration::from_millis(10));
        loop {
            let gone = {
                let m = self.membership.borrow();
                ids.iter().copied().find(|id| m.member(*id).is_none_or(|x| !x.state.is_up()))
            };
            if let Some(id) = gone {
                return id;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Runs a scrub pass over the current ring, unless a membership change
    /// or another pass is under way (or the ring keeps one copy, which has
    /// nothing to compare with), saying why not.
    async fn scrub_pass(self: Rc<Self>) -> Result<scrub::Report, String> {
        if self.scrubbing.get() {
            return Err("a scrub pass is under way".into());
        }
        // Not while a change moves data: the ring it compares must stand.
        let Ok(changing) = self.changing.try_lock() else {
            return Err("a membership change is moving data".into());
        };
        let (ring, addresses, log_bytes) = {
            let m = self.membership.borrow();
            let ring = m.ring();
            if ring.replicas() < 2 {
                return Err("the ring keeps one copy of each key: nothing to compare".into());
            }
            let held: std::collections::BTreeSet<WorkerId> =
                ring.chains().iter().flat_map(|(_, c)| c.members().to_vec()).collect();
            let addresses: BTreeMap<WorkerId, String> =
                m.members().filter(|x| held.contains(&x.id)).map(|x| (x.id, x.address.clone())).collect();
            let log_bytes = m.members().map(|x| (x.id, x.stats.log_bytes)).collect::<BTreeMap<_, _>>();
            (ring, addresses, log_bytes)
        };
        drop(changing);
        self.scrubbing.set(true);
        let _done = ResetOnDrop(&self.scrubbing);
        let mut clients = BTreeMap::new();
        for (id, address) in &addresses {
            match connect_worker(address, &self.security).await {
                Ok(c) => _ = clients.insert(*id, c),
                Err(e) => return Err(format!("worker {id} at {address}: {e}")),
            }
        }
        let epoch = ring.epoch();
        let still_current = || self.membership.borrow().epoch() == epoch;
        let report = scrub::pass(&ring, &clients, &log_bytes, self.scrub, still_current).await;
        tracing::info!(
            ranges = report.ranges,
            differing = report.differing,
            repaired = report.repaired,
            took_ms = report.took.as_millis() as u64,
            failure = report.failure,
            "scrub pass done"
        );
        *self.scrubbed.borrow_mut() = report.clone();
        Ok(report)
    }

    /// Makes the membership durable (if it changed) before anyone hears
    /// of the change.
    fn persist(&self) -> Result<(), capnp::Error> {
        match self.state.as_ref() {
            Some(file) => file
                .save(&self.membership.borrow().snapshot())
                .map_err(|e| capnp::Error::failed(format!("saving the master's state: {e}"))),
            None => Ok(()),
        }
    }

    /// Marks `id` as heard from since a restart.
    fn heard(&self, id: WorkerId) {
        if self.awaiting.borrow_mut().remove(&id) && self.awaiting.borrow().is_empty() {
            tracing::info!("heard from every worker of the last run");
        }
    }

    /// Stops waiting for restored members that are now down or gone.
    fn heard_or_down(&self) {
        let m = self.membership.borrow();
        let gone: Vec<WorkerId> = self
            .awaiting
            .borrow()
            .iter()
            .copied()
            .filter(|id| m.member(*id).is_none_or(|x| x.state == MemberState::Down))
            .collect();
        drop(m);
        for id in gone {
            self.heard(id);
        }
    }
}

fn write_member(mut b: member::Builder<'_>, m: &crate::membership::Member) {
    b.set_id(m.id);
    b.set_address(m.address.as_str());
    b.set_state(m.state.into());
    b.set_reason(m.reason(Instant::now()).as_str());
    b.set_certificate(m.holder.as_deref().unwrap_or(""));
    b.set_certificate_expires(wimpy_schema::ring_info::unix_seconds(m.certificate_expires));
    m.stats.write(b.init_stats());
}

/// Writes the ring at the current epoch: every member but joining ones.
fn write_ring(mut b: ring_info::Builder<'_>, m: &Membership) {
    b.set_epoch(m.epoch());
    b.set_vnodes(m.vnodes());
    b.set_replicas(m.replicas());
    let on_ring: Vec<_> = m.members().filter(|x| x.state != MemberState::Joining).collect();
    let mut list = b.init_members(on_ring.len() as u32);
    for (i, x) in on_ring.into_iter().enumerate() {
        write_member(list.reborrow().get(i as u32), x);
    }
}

/// The `Master` interface on one connection: what the caller's
/// certificate lets it do decides which calls it gets. Worker lifecycle
/// calls need the worker role, `leave` the admin role; the ring, status and
/// the proxy serve every role.
struct MasterSession {
    service: Rc<MasterService>,
    peer: Peer,
}

impl MasterSession {
    /// `None` if the caller holds `needs`, else the refusal to answer with.
    fn refuse_unless(&self, needs: Role, call: &str) -> Option<Failure> {
        if self.peer.holds(needs) {
            return None;
        }
        tracing::warn!("refused {call} to {}: it needs the {needs} role", self.peer);
        Some(Failure::forbidden(call, needs, &self.peer))
    }

    /// Refuses every call but `join` to a peer without a certificate.
    fn check_known(&self, call: &str) -> Result<(), capnp::Error> {
        match self.peer {
            Peer::Anonymous => Err(capnp::Error::failed(format!(
                "forbidden: {call} needs a certificate from the cluster's CA (a peer without one may only join)"
            ))),
            _ => Ok(()),
        }
    }
}

impl master::Server for MasterSession {
    async fn ring(
        self: Rc<Self>,
        params: master::RingParams,
        results: master::RingResults,
    ) -> Result<(), capnp::Error> {
        self.check_known("Master.ring")?;
        self.service.clone().ring(params, results).await
    }

    async fn status(
        self: Rc<Self>,
        params: master::StatusParams,
        results: master::StatusResults,
    ) -> Result<(), capnp::Error> {
        self.check_known("Master.status")?;
        self.service.clone().status(params, results).await
    }

    async fn register(
        self: Rc<Self>,
        params: master::RegisterParams,
        mut results: master::RegisterResults,
    ) -> Result<(), capnp::Error> {
        if let Some(refused) = self.refuse_unless(Role::Worker, "Master.register") {
            refused.write(results.get().init_refused());
            return Ok(());
        }
        self.service.clone().register(&self.peer, params, results).await
    }

    async fn heartbeat(
        self: Rc<Self>,
        params: master::HeartbeatParams,
        mut results: master::HeartbeatResults,
    ) -> Result<(), capnp::Error> {
        if let Some(refused) = self.refuse_unless(Role::Worker, "Master.heartbeat") {
            refused.write(results.get().init_refused());
            return Ok(());
        }
        self.service.clone().heartbeat(&self.peer, params, results).await
    }

    async fn leave(
        self: Rc<Self>,
        params: master::LeaveParams,
        mut results: master::LeaveResults,
    ) -> Result<(), capnp::Error> {
        if let Some(refused) = self.refuse_unless(Role::Admin, "Master.leave") {
            refused.write(results.get().init_result().init_failure());
            return Ok(());
        }
        self.service.clone().leave(params, results).await
    }

    async fn get(self: Rc<Self>, params: master::GetParams, results: master::GetResults) -> Result<(), capnp::Error> {
        self.check_known("Master.get")?;
        self.service.clone().get(params, results).await
    }

    async fn put(self: Rc<Self>, params: master::PutParams, results: master::PutResults) -> Result<(), capnp::Error> {
        self.check_known("Master.put")?;
        self.service.clone().put(params, results).await
    }

    async fn delete(
        self: Rc<Self>,
        params: master::DeleteParams,
        results: master::DeleteResults,
    ) -> Result<(), capnp::Error> {
        self.check_known("Master.delete")?;
        self.service.clone().delete(params, results).await
    }

    async fn batch(
        self: Rc<Self>,
        params: master::BatchParams,
        results: master::BatchResults,
    ) -> Result<(), capnp::Error> {
        self.check_known("Master.batch")?;
        self.service.clone().batch(params, results).await
    }

    async fn scrub(
        self: Rc<Self>,
        _: master::ScrubParams,
        mut results: master::ScrubResults,
    ) -> Result<(), capnp::Error> {
        if let Some(refused) = self.refuse_unless(Role::Admin, "Master.scrub") {
            refused.write(results.get().init_refused());
            return Ok(());
        }
        self.service.clone().scrub(results).await
    }

    async fn join_token(
        self: Rc<Self>,
        params: master::JoinTokenParams,
        mut results: master::JoinTokenResults,
    ) -> Result<(), capnp::Error> {
        if let Some(refused) = self.refuse_unless(Role::Admin, "Master.joinToken") {
            refused.write(results.get().init_refused());
            return Ok(());
        }
        let Some(signer) = &self.service.signer else {
            Failure::Unavailable(
                "this master holds no CA key to sign joining workers' certificates with (start it with --ca-key-file)"
                    .into(),
            )
            .write(results.get().init_refused());
            return Ok(());
        };
        let ttl = u64::from(params.get()?.get_ttl_seconds().max(1));
        let token = JoinToken::new(signer.fingerprint());
        let now = unix_now();
        self.service.membership.borrow_mut().add_join_token(join::secret_hash(&token.secret), now + ttl, now);
        self.service.persist()?;
        tracing::info!("issued a join token valid for {ttl} s to {}", self.peer);
        results.get().set_token(token.to_string());
        Ok(())
    }

    async fn join(
        self: Rc<Self>,
        params: master::JoinParams,
        mut results: master::JoinResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let name = p.get_name()?.to_str().map_err(|e| capnp::Error::failed(format!("name: {e}")))?.to_owned();
        let Some(signer) = self.service.signer.clone() else {
            return refuse_join(results, &name, "this master signs no certificates".into());
        };
        // The token is spent before anything else is looked at: a secret is
        // good for one try.
        let spent =
            self.service.membership.borrow_mut().spend_join_token(&join::secret_hash(p.get_secret()?), unix_now());
        if !spent {
            return refuse_join(results, &name, "the join token is unknown, spent or expired".into());
        }
        self.service.persist()?;
        match signer.sign_request(p.get_request()?, &CertRequest::new(Role::Worker, name.clone())) {
            Ok(cert) => {
                tracing::info!("signed a worker certificate for {name:?}, who joined with a token");
                let mut r = results.get();
                r.set_certificate(cert);
                r.set_ca(signer.cert_pem());
                Ok(())
            }
            Err(e) => refuse_join(results, &name, e.to_string()),
        }
    }
}

fn refuse_join(mut results: master::JoinResults, name: &str, why: String) -> Result<(), capnp::Error> {
    tracing::warn!("refused a join as {name:?}: {why}");
    Failure::Forbidden { needs: Role::Worker, message: format!("Master.join: {why}") }
        .write(results.get().init_refused());
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What each call does, once [`MasterSession`] let the caller make it.
impl MasterService {
    async fn ring(self: Rc<Self>, _: master::RingParams, mut results: master::RingResults) -> Result<(), capnp::Error> {
        write_ring(results.get().init_ring(), &self.membership.borrow());
        Ok(())
    }

    async fn status(
        self: Rc<Self>,
        _: master::StatusParams,
        mut results: master::StatusResults,
    ) -> Result<(), capnp::Error> {
        let m = self.membership.borrow();
        let mut r = results.get();
        write_ring(r.reborrow().init_ring(), &m);
        let joining: Vec<_> = m.members().filter(|x| x.state == MemberState::Joining).collect();
        let mut list = r.reborrow().init_joining(joining.len() as u32);
        for (i, x) in joining.into_iter().enumerate() {
            write_member(list.reborrow().get(i as u32), x);
        }
        let moving = self.moving.borrow();
        let mut list = r.reborrow().init_moving(u32::from(moving.is_some()));
        if let Some(p) = moving.as_ref() {
            p.report().write(list.reborrow().get(0));
        }
        self.write_scrub(r.init_scrub());
        Ok(())
    }

    fn write_scrub(&self, b: scrub_report::Builder<'_>) {
        let last = self.scrubbed.borrow().clone();
        scrub::Report { running: self.scrubbing.get(), bytes_per_second: self.scrub.bytes_per_second, ..last }.write(b);
    }

    async fn scrub(self: Rc<Self>, mut results: master::ScrubResults) -> Result<(), capnp::Error> {
        match self.clone().scrub_pass().await {
            Ok(_) => self.write_scrub(results.get().init_report()),
            Err(why) => Failure::Unavailable(format!("no scrub pass now: {why}")).write(results.get().init_refused()),
        }
        Ok(())
    }

    async fn register(
        self: Rc<Self>,
        peer: &Peer,
        params: master::RegisterParams,
        mut results: master::RegisterResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let holder = peer.identity().map(|i| i.name.as_str());
        if let Err(why) = self.membership.borrow().may_speak_for(p.get_id(), holder) {
            tracing::warn!("refused Master.register to {peer}: {why}");
            Failure::Forbidden { needs: Role::Worker, message: format!("Master.register: {why}") }
                .write(results.get().init_refused());
            return Ok(());
        }
        let address = p.get_address()?.to_str().map_err(|e| capnp::Error::failed(format!("address: {e}")))?;
        if address.is_empty() {
            return Err(capnp::Error::failed("register: empty worker address".into()));
        }
        if self.membership.borrow().has_departed(p.get_id()) {
            return Err(capnp::Error::failed(format!(
                "worker {} left the cluster and handed its keys over; start it on an empty data directory to join again",
                p.get_id()
            )));
        }
        let before = self.membership.borrow().epoch();
        let (id, joins) = self.membership.borrow_mut().register(p.get_id(), address.to_owned(), Instant::now());
        self.membership.borrow_mut().bind(id, holder.map(str::to_owned), peer.identity().map(|i| i.not_after));
        self.persist()?;
        self.heard(id);
        if joins {
            tokio::task::spawn_local(join(self.clone(), id));
        } else if self.membership.borrow().epoch() != before {
            tokio::task::spawn_local(push_ring(self.clone()));
        }
        let mut r = results.get();
        r.set_id(id);
        r.set_heartbeat_millis(self.heartbeat.as_millis().min(u32::MAX as u128) as u32);
        r.set_lease_millis(self.lease().as_millis().clamp(1, u32::MAX as u128) as u32);
        Ok(())
    }

    async fn heartbeat(
        self: Rc<Self>,
        peer: &Peer,
        params: master::HeartbeatParams,
        mut results: master::HeartbeatResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        if let Err(why) = self.membership.borrow().may_speak_for(p.get_id(), peer.identity().map(|i| i.name.as_str())) {
            tracing::warn!("refused Master.heartbeat to {peer}: {why}");
            Failure::Forbidden { needs: Role::Worker, message: format!("Master.heartbeat: {why}") }
                .write(results.get().init_refused());
            return Ok(());
        }
        let stats = MemberStats::read(p.get_stats()?)?;
        let failure =
            p.get_store_failure()?.to_string().map_err(|e| capnp::Error::failed(format!("storeFailure: {e}")))?;
        let failure = (!failure.is_empty()).then_some(failure);
        let id = p.get_id();
        let (before, epoch_before) = {
            let m = self.membership.borrow();
            (m.member(id).map(|x| x.state), m.epoch())
        };
        let epoch = self.membership.borrow_mut().heartbeat(id, stats, failure.clone(), Instant::now());
        match (before, self.membership.borrow().member(id).map(|m| m.state)) {
            (Some(b), Some(MemberState::Failed)) if b != MemberState::Failed => {
                tracing::error!(
                    worker = id,
                    failure = failure.as_deref().unwrap_or(""),
                    "a worker's store failed; its keys answer unavailable until it reopens"
                )
            }
            (Some(MemberState::Failed), Some(MemberState::Serving)) => {
                tracing::info!(worker = id, "a worker's store serves again")
            }
            (Some(b), Some(MemberState::Returning)) if b != MemberState::Returning => {
                tracing::info!(worker = id, "a worker is back; it catches up before its chains take it again");
                tokio::task::spawn_local(join(self.clone(), id));
            }
            _ => {}
        }
        self.persist()?;
        if epoch.is_some() {
            self.heard(id);
        }
        if epoch.is_some_and(|e| e != epoch_before) {
            // Its state changed: everyone routes around it (or to it again).
            tokio::task::spawn_local(push_ring(self.clone()));
        }
        match epoch {
            Some(epoch) => results.get().set_epoch(epoch),
            None => results.get().set_unknown_member(()),
        }
        Ok(())
    }

    /// Hands the worker's ranges to the members that own their hashes
    /// without it, then takes it off the ring at a new epoch.
    async fn leave(
        self: Rc<Self>,
        params: master::LeaveParams,
        mut results: master::LeaveResults,
    ) -> Result<(), capnp::Error> {
        let id = params.get()?.get_id();
        let mut r = results.get().init_result();
        match self.clone().leave_worker(id).await {
            Ok(Left::Done) => r.set_left(()),
            Ok(Left::NotMember) => r.set_not_member(()),
            Ok(Left::LastOnRing) => r.set_last_on_ring(()),
            Err(f) => f.write(r.init_failure()),
        }
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        params: master::GetParams,
        mut results: master::GetResults,
    ) -> Result<(), capnp::Error> {
        let key = params.get()?.get_key()?;
        let outcome = self.proxy.get(key, || self.route(key)).await;
        let mut r = results.get().init_result();
        match outcome {
            Ok(Some(v)) => r.set_value(&v),
            Ok(None) => r.set_not_found(()),
            Err(f) => f.write(r.init_failure()),
        }
        Ok(())
    }

    async fn put(
        self: Rc<Self>,
        params: master::PutParams,
        mut results: master::PutResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (key, value) = (p.get_key()?, p.get_value()?);
        let outcome = self.proxy.put(key, value, || self.route(key)).await;
        let mut r = results.get().init_result();
        match outcome {
            Ok(()) => r.set_ok(()),
            Err(f) => f.write(r.init_failure()),
        }
        Ok(())
    }

    async fn delete(
        self: Rc<Self>,
        params: master::DeleteParams,
        mut results: master::DeleteResults,
    ) -> Result<(), capnp::Error> {
        let key = params.get()?.get_key()?;
        let outcome = self.proxy.delete(key, || self.route(key)).await;
        let mut r = results.get().init_result();
        match outcome {
            Ok(d) => r.set_deleted(d),
            Err(f) => f.write(r.init_failure()),
        }
        Ok(())
    }

    async fn batch(
        self: Rc<Self>,
        params: master::BatchParams,
        mut results: master::BatchResults,
    ) -> Result<(), capnp::Error> {
        let ops = params.get()?.get_ops()?;
        let n = ops.len();
        let answers = match read_requests(ops)? {
            Ok(requests) => self.proxy.serve_batch(requests, |key| self.route(key)).await,
            Err(refused) => vec![KeyAnswer::Failed(refused); n as usize],
        };
        write_answers(results.get().init_results(n), answers);
        Ok(())
    }
}
