//! The master's RPC service, and the loop that serves it.
//!
//! Membership is small and changes rarely, so the master runs on one thread:
//! a `LocalSet` holds every connection and the failure detector, and the
//! table sits in a `RefCell` no other thread can reach.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use tokio::net::TcpListener;

use wimpy_schema::WorkerId;
use wimpy_schema::wimpy_capnp::{master, member, ring_info, worker};

use crate::membership::{MemberState, MemberStats, Membership};
use crate::proxy::{CacheConfig, Proxy, Route};
use crate::rebalance;
use wimpy_net::deadline::{CALL, within};
use wimpy_schema::batch::{KeyAnswer, read_requests, write_answers};
use wimpy_schema::{Failure, StorageKind};

/// How the master runs.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// Virtual nodes per worker on the ring.
    pub vnodes: u32,
    /// How often workers are told to heartbeat.
    pub heartbeat: Duration,
    /// Silence after which a worker counts as down. Several heartbeats, so
    /// one delayed packet does not take a worker's keys offline.
    pub down_after: Duration,
    /// Where the master keeps the last epoch it published, so that after a
    /// restart epochs keep rising (workers ignore rings older than theirs).
    /// Workers re-register on their own; the member list need not be kept.
    pub data: Option<std::path::PathBuf>,
    /// The proxy's hot-key cache.
    pub cache: CacheConfig,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            vnodes: wimpy_schema::ring::DEFAULT_VNODES,
            heartbeat: Duration::from_millis(500),
            down_after: Duration::from_secs(2),
            data: None,
            cache: CacheConfig::default(),
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
    let epochs = config.data.as_ref().map(|d| EpochFile(d.join(EPOCH_FILE)));
    let last = match &epochs {
        Some(f) => f.load()?,
        None => 0,
    };
    let membership = Rc::new(RefCell::new(Membership::new(config.vnodes, config.down_after).resume_after(last)));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let epochs = Rc::new(epochs);
            let service: master::Client = capnp_rpc::new_client(MasterService {
                membership: membership.clone(),
                heartbeat: config.heartbeat,
                epochs: epochs.clone(),
                proxy: Proxy::new(config.cache.clone()),
                changing: tokio::sync::Mutex::new(()),
            });
            // The failure detector looks several times per timeout, so a
            // dead worker is marked down within about 1.25 timeouts.
            let sweeper = {
                let membership = membership.clone();
                let every = (config.down_after / 4).max(Duration::from_millis(10));
                tokio::task::spawn_local(async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tick.tick().await;
                        if membership.borrow_mut().sweep(Instant::now())
                            && let Err(e) = save_epoch(&epochs, membership.borrow().epoch())
                        {
                            tracing::error!(error = %e, "saving the epoch of a member marked down");
                        }
                    }
                })
            };
            tokio::pin!(shutdown);
            let result = loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let service = service.clone();
                            tokio::task::spawn_local(async move {
                                // Peers hang up as they please: worth a debug line, no more.
                                if let Err(e) = serve_connection(stream, service).await {
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
            result
        })
        .await
}

async fn serve_connection(stream: tokio::net::TcpStream, service: master::Client) -> std::io::Result<()> {
    wimpy_net::serve(stream, service.client).await
}

/// How a leave that ran came out.
enum Left {
    Done,
    NotMember,
    LastOnRing,
}

struct MasterService {
    membership: Rc<RefCell<Membership>>,
    heartbeat: Duration,
    epochs: Rc<Option<EpochFile>>,
    proxy: Proxy,
    /// Held by a membership change for as long as it moves data, so that
    /// changes never plan against a ring another change is replacing.
    changing: tokio::sync::Mutex<()>,
}

/// Moves a joining worker's ranges to it and puts it on the ring; retries
/// (with backoff) while the worker is still registered and joining.
async fn join(service: Rc<MasterService>, id: WorkerId) {
    let mut pause = Duration::from_millis(100);
    loop {
        let _changing = service.changing.lock().await;
        let (before, after, addresses) = {
            let m = service.membership.borrow();
            match m.member(id) {
                Some(x) if x.state == MemberState::Joining => {}
                _ => return, // gone, or already serving
            }
            let addresses: BTreeMap<WorkerId, (String, MemberState)> =
                m.members().map(|x| (x.id, (x.address.clone(), x.state))).collect();
            (m.ring(), m.ring_with(id), addresses)
        };
        let plan = rebalance::join_plan(&rebalance::moves_for_join(&before, &after, id), id);
        match service.run_plan(&plan, &addresses).await {
            Ok(copied) => {
                let before_epoch = service.membership.borrow().epoch();
                if service.membership.borrow_mut().promote(id) {
                    if let Err(e) = service.publish(before_epoch) {
                        tracing::error!(error = %e, "saving the epoch of worker {id}'s join");
                    }
                    tracing::info!("worker {id} joined with {copied} records");
                }
                drop(_changing);
                push_ring(service.clone()).await;
                return;
            }
            Err(e) => tracing::warn!(error = %e, "join of worker {id} failed; retrying in {pause:?}"),
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
) -> Result<BTreeMap<WorkerId, worker::Client>, capnp::Error> {
    let mut clients = BTreeMap::new();
    for id in plan.iter().flat_map(|m| [m.from, m.to]) {
        if clients.contains_key(&id) {
            continue;
        }
        let Some((addr, state)) = addresses.get(&id) else {
            return Err(capnp::Error::failed(format!("worker {id} is no longer a member")));
        };
        if *state == MemberState::Down {
            return Err(capnp::Error::failed(format!("worker {id} is down")));
        }
        clients.insert(id, connect_worker(addr).await?);
    }
    Ok(clients)
}

async fn connect_worker(address: &str) -> Result<worker::Client, capnp::Error> {
    wimpy_net::connect(address).await.map_err(|e| capnp::Error::disconnected(format!("{address}: {e}")))
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
    let w = connect_worker(address).await?;
    let mut req = w.set_ring_request();
    write_ring(req.get().init_ring(), &service.membership.borrow());
    within(CALL, "setRing", req.send().promise).await.map(drop)
}

/// Name of the file in the master's data directory holding the last epoch.
const EPOCH_FILE: &str = "epoch";

/// The last published epoch, on disk.
struct EpochFile(std::path::PathBuf);

impl EpochFile {
    fn load(&self) -> std::io::Result<u64> {
        match std::fs::read_to_string(&self.0) {
            Ok(s) => s.trim().parse().map_err(|e| std::io::Error::other(format!("{}: {e}", self.0.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn save(&self, epoch: u64) -> std::io::Result<()> {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, format!("{epoch}\n"))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.0)
    }
}

fn save_epoch(epochs: &Option<EpochFile>, epoch: u64) -> Result<(), capnp::Error> {
    match epochs {
        Some(f) => f.save(epoch).map_err(|e| capnp::Error::failed(format!("saving the ring epoch: {e}"))),
        None => Ok(()),
    }
}

impl MasterService {
    /// Where `key` goes under the master's current ring.
    fn route(&self, key: &[u8]) -> Result<Route, Failure> {
        let m = self.membership.borrow();
        let ring = m.ring();
        let owner = ring.owner(key).ok_or_else(|| Failure::Unavailable("the cluster has no workers".into()))?;
        let member = m.member(owner).ok_or_else(|| Failure::Unavailable(format!("worker {owner} is unknown")))?;
        if member.state == MemberState::Down {
            return Err(Failure::Unavailable(format!("worker {owner} at {} is down", member.address)));
        }
        Ok(Route { address: member.address.clone(), epoch: ring.epoch() })
    }

    /// The work of `Master.leave`: a refusal when the leave cannot start,
    /// a `Failure` when the handover fails (the ring is then as it was).
    async fn leave_worker(self: Rc<Self>, id: WorkerId) -> Result<Left, Failure> {
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
        if state != MemberState::Joining {
            let plan = rebalance::moves_for_leave(&before, &after, id);
            let moved = self
                .run_plan(&plan, &addresses)
                .await
                .map_err(|e| Failure::Unavailable(format!("handing worker {id}'s ranges over: {e}")))?;
            tracing::info!("worker {id} handed over {moved} records");
        }
        let epoch_before = self.membership.borrow().epoch();
        self.membership.borrow_mut().depart(id);
        self.publish(epoch_before).map_err(|e| Failure::storage(StorageKind::Io, e.to_string()))?;
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
    ) -> Result<u64, capnp::Error> {
        let involved: Vec<WorkerId> = plan.iter().flat_map(|m| [m.from, m.to]).collect();
        let run = async {
            let clients = connect_plan(plan, addresses).await?;
            rebalance::transfer(plan, &clients).await
        };
        tokio::select! {
            done = run => done,
            id = self.first_down(&involved) => {
                Err(capnp::Error::disconnected(format!("worker {id} stopped answering (marked down)")))
            }
        }
    }

    /// Resolves with the first of `ids` the failure detector marks down or
    /// forgets, looking as often as the detector itself does.
    async fn first_down(&self, ids: &[WorkerId]) -> WorkerId {
        let every = (self.membership.borrow().down_after() / 4).max(Duration::from_millis(10));
        loop {
            let gone = {
                let m = self.membership.borrow();
                ids.iter().copied().find(|id| m.member(*id).is_none_or(|x| x.state == MemberState::Down))
            };
            if let Some(id) = gone {
                return id;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Makes a new epoch durable before anyone hears of it.
    fn publish(&self, before: u64) -> Result<(), capnp::Error> {
        let now = self.membership.borrow().epoch();
        if now != before { save_epoch(&self.epochs, now) } else { Ok(()) }
    }
}

fn write_member(mut b: member::Builder<'_>, m: &crate::membership::Member) {
    b.set_id(m.id);
    b.set_address(m.address.as_str());
    b.set_state(m.state.into());
    m.stats.write(b.init_stats());
}

/// Writes the ring at the current epoch: every member but joining ones.
fn write_ring(mut b: ring_info::Builder<'_>, m: &Membership) {
    b.set_epoch(m.epoch());
    b.set_vnodes(m.vnodes());
    let on_ring: Vec<_> = m.members().filter(|x| x.state != MemberState::Joining).collect();
    let mut list = b.init_members(on_ring.len() as u32);
    for (i, x) in on_ring.into_iter().enumerate() {
        write_member(list.reborrow().get(i as u32), x);
    }
}

impl master::Server for MasterService {
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
        let mut list = r.init_joining(joining.len() as u32);
        for (i, x) in joining.into_iter().enumerate() {
            write_member(list.reborrow().get(i as u32), x);
        }
        Ok(())
    }

    async fn register(
        self: Rc<Self>,
        params: master::RegisterParams,
        mut results: master::RegisterResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
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
        self.publish(before)?;
        if joins {
            tokio::task::spawn_local(join(self.clone(), id));
        } else if self.membership.borrow().epoch() != before {
            tokio::task::spawn_local(push_ring(self.clone()));
        }
        let mut r = results.get();
        r.set_id(id);
        r.set_heartbeat_millis(self.heartbeat.as_millis().min(u32::MAX as u128) as u32);
        Ok(())
    }

    async fn heartbeat(
        self: Rc<Self>,
        params: master::HeartbeatParams,
        mut results: master::HeartbeatResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let stats = MemberStats::read(p.get_stats()?)?;
        let before = self.membership.borrow().epoch();
        let epoch = self.membership.borrow_mut().heartbeat(p.get_id(), stats, Instant::now());
        self.publish(before)?;
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
