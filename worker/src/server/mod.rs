//! The worker's RPC service: get, put and delete over its store, for the keys
//! the ring says it owns.
//!
//! capnp-rpc objects are `Rc`-based and stay on one thread, so the service
//! runs one current-thread runtime with a `LocalSet` per core; the accept loop
//! hands each new connection (a plain socket, which is `Send`) to the next
//! core in turn. Store calls that may wait for an fsync run on the blocking
//! pool, so one slow flush does not stall every connection on a core.

mod batch;
mod chain;
mod compute;
mod given_away;
pub mod intake;
mod lease;
mod refusal;
pub mod streams;
pub mod transfer;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use wimpy_schema::wimpy_capnp::{record_sink, worker, worker_admin};
use wimpy_schema::{KeyHashRange, Ring, WorkerId};

use wimpy_net::{Peer, Role, Security};
use wimpy_store::{Applied, Op, Store, SyncMode};

pub use chain::IN_FLIGHT_BYTES;
pub use refusal::refusal;
use wimpy_schema::{DamagedSpan, Failure, LimitKind, MemberInfo, RingInfo, StorageKind, StoreFigures};

use crate::store_slot::StoreSlot;

use self::intake::{Admitted, ConnectionCalls, Intake, IntakeLimits};
use wimpy_schema::batch::{KeyAnswer, write_answers};

/// How long a fence holds unless renewed (the schema's `fenceLeaseMillis`):
/// long enough for the copy of one range between renewals, short enough that
/// a master that died mid-move does not block writes for long.
pub const FENCE_LEASE: std::time::Duration =
    std::time::Duration::from_millis(wimpy_schema::wimpy_capnp::FENCE_LEASE_MILLIS as u64);

/// Largest value returned inline by `get`; larger ones go by `getStream`.
pub const MAX_INLINE_VALUE: usize = wimpy_schema::wimpy_capnp::MAX_INLINE_VALUE as usize;

/// What every core's service shares.
#[derive(Debug)]
pub struct WorkerState {
    /// This worker's id on the ring.
    pub id: WorkerId,
    /// The worker's data, reopened in place when it fails.
    store: Arc<StoreSlot>,
    /// The store's figures as last read, reported while it is reopened.
    last_figures: std::sync::Mutex<StoreFigures>,
    /// The compute backends jobs run on.
    pub engine: Arc<wimpy_compute::Engine>,
    /// The newest ring this worker has been given: what requests are
    /// routed by.
    ring: ArcSwap<Ring>,
    /// The newest ring whose epoch the master has confirmed (in a
    /// heartbeat answer): keys are dropped only for ranges this ring gives
    /// away, so a ring the master never stood behind cannot delete data.
    confirmed: std::sync::Mutex<Arc<Ring>>,
    /// That ring as the master published it, to hand on (`Worker.ring`).
    published: ArcSwap<RingInfo>,
    /// Ranges whose writes are refused while they move to another worker,
    /// and until when: cleared by the next ring, and lapsing on their own
    /// if the master that set them goes away (it renews them while it copies).
    /// Read on every write by every core: an `ArcSwap`, not a lock.
    fences: ArcSwap<(Vec<KeyHashRange>, std::time::Instant)>,
    /// Threads deleting the keys of ranges given away; joined by
    /// [`WorkerState::close`] so that they finish before the store closes.
    background: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Ranges copied in, which those threads spare.
    copied_in: given_away::CopiedIn,
    /// What the worker takes in at once.
    pub intake: Intake,
    /// The name on the certificate of the master this worker registered
    /// with: only that master gets the membership calls (`Worker.admin`).
    master: std::sync::Mutex<Option<String>>,
    /// Held shared by every write from its fence check until it is done,
    /// and taken whole by [`WorkerState::fence`] to wait for those writes.
    write_gate: tokio::sync::RwLock<()>,
    /// Key locks, versions and links of chain replication.
    chain: chain::ChainState,
    /// The lease from the master under which it serves as a chain member.
    lease: lease::Lease,
}

/// A write's hold on the write gate.
pub(crate) type WriteGate<'a> = tokio::sync::RwLockReadGuard<'a, ()>;

impl WorkerState {
    /// A worker `id` serving `store` and running compute jobs on `engine`,
    /// not yet on any ring.
    pub fn new(id: WorkerId, store: Store, engine: Arc<wimpy_compute::Engine>) -> WorkerState {
        WorkerState {
            id,
            store: Arc::new(StoreSlot::new(store)),
            last_figures: Default::default(),
            engine,
            ring: ArcSwap::from_pointee(Ring::empty(0, 1)),
            confirmed: std::sync::Mutex::new(Arc::new(Ring::empty(0, 1))),
            published: ArcSwap::from_pointee(RingInfo::empty()),
            fences: ArcSwap::from_pointee((Vec::new(), std::time::Instant::now())),
            background: Default::default(),
            copied_in: Default::default(),
            intake: Intake::new(IntakeLimits::default()),
            master: std::sync::Mutex::new(None),
            write_gate: tokio::sync::RwLock::new(()),
            chain: chain::ChainState::default(),
            lease: Default::default(),
        }
    }

    /// Records the master this worker registered with, as its certificate
    /// names it (`None` over an insecure connection).
    pub fn registered_with(&self, master: &Peer) {
        if let Some(identity) = master.identity() {
            *self.master.lock().unwrap_or_else(|p| p.into_inner()) = Some(identity.name.clone());
        }
    }

    /// Whether `peer` may make membership calls here: it must hold the
    /// master role and, once this worker has registered, be the master it
    /// registered with (another master-role certificate, a stolen or stale
    /// one, cannot rewrite its ring).
    pub(crate) fn admits_as_master(&self, peer: &Peer) -> Result<(), Failure> {
        if !peer.holds(Role::Master) {
            return Err(Failure::forbidden("Worker.admin", Role::Master, peer));
        }
        let registered = self.master.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match (registered, peer.identity()) {
            (Some(master), Some(identity)) if identity.name != master => Err(Failure::Forbidden {
                needs: Role::Master,
                message: format!("Worker.admin: this worker registered with master {master:?}, not {peer}"),
            }),
            _ => Ok(()),
        }
    }

    /// The same state with other intake caps.
    pub fn with_intake(mut self, limits: IntakeLimits) -> WorkerState {
        self.intake = Intake::new(limits);
        self
    }

    /// The same, letting at most `bytes` of the writes it heads be on their
    /// way down their chains at once (the rest wait; by default
    /// [`IN_FLIGHT_BYTES`]).
    pub fn with_chain_room(mut self, bytes: usize) -> WorkerState {
        self.chain = std::mem::take(&mut self.chain).with_room(bytes);
        self
    }

    /// Waits for the background work, stops the compute engine (each
    /// backend torn down on its own thread) and closes the store, checking
    /// that its last flush and checkpoint succeeded. Call it once nothing
    /// else holds the state: the RPC threads have stopped.
    pub fn close(self: Arc<Self>) -> Result<(), String> {
        let background = std::mem::take(&mut *self.background.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in background {
            if thread.join().is_err() {
                tracing::error!("a thread dropping given-away keys panicked");
            }
        }
        let state = Arc::into_inner(self).ok_or("the worker's state is still in use as it closes")?;
        let WorkerState { store, engine, .. } = state;
        drop(Arc::into_inner(engine).ok_or("the compute engine is still in use as it closes")?);
        Arc::into_inner(store).ok_or("the store is still in use as it closes")?.close()
    }

    /// The store to serve a call from, or why it cannot serve (it failed
    /// and is being reopened): `unavailable`, saying why.
    pub fn store(&self) -> Result<Arc<Store>, Failure> {
        self.store.get().map_err(refusal)
    }

    /// The slot the store is kept in, for healing it.
    pub fn store_slot(&self) -> &Arc<StoreSlot> {
        &self.store
    }

    /// What the store says about itself, for heartbeats and `stats`: its
    /// figures now and what its last recovery stepped over (the figures
    /// last read while it is being reopened).
    pub fn figures(&self) -> StoreFigures {
        let mut last = self.last_figures.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(store) = self.store.get() {
            *last = store_figures(&store);
        }
        last.clone()
    }

    /// The ring requests are checked against.
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.load_full()
    }

    /// Adopts `ring` to route by unless it is older than the one held.
    /// Keys it gives to others stay until the master confirms its epoch
    /// ([`WorkerState::confirm_epoch`]).
    pub fn set_ring(self: &Arc<Self>, info: RingInfo) {
        let ring = info.ring();
        let old = self.ring.load_full();
        if ring.epoch() < old.epoch() || (ring.epoch() == old.epoch() && ring == *old) {
            return;
        }
        self.route_by(info);
    }

    /// Follows the ring the master serves (`Master.ring`), even if it is
    /// older than the one held: the master is the only source of rings, so
    /// a held ring ahead of the master's own epoch did not come from it.
    pub fn follow_master(self: &Arc<Self>, info: RingInfo) {
        let held = self.ring.load_full();
        if info.epoch < held.epoch() {
            tracing::warn!(
                held = held.epoch(),
                master = info.epoch,
                "this worker's ring is ahead of the master's epoch; following the master's"
            );
            self.route_by(info);
        } else {
            self.set_ring(info);
        }
    }

    /// Routes by `info` from now on: publishes it to clients and lifts
    /// every fence (a new ring ends a move).
    fn route_by(&self, info: RingInfo) {
        self.ring.store(Arc::new(info.ring()));
        // As handed on to clients: where the members are, not their figures.
        let members = info.members.into_iter().map(|m| MemberInfo { stats: Default::default(), ..m }).collect();
        self.published.store(Arc::new(RingInfo { members, ..info }));
        self.fences.store(Arc::new((Vec::new(), std::time::Instant::now())));
    }

    /// How long an answered heartbeat lets this worker serve as a member of
    /// its chains (`None`: the master grants no lease).
    pub fn set_lease_length(&self, length: Option<std::time::Duration>) {
        self.lease.set_length(length);
    }

    /// The master answered a heartbeat sent at `sent` with `epoch`: if the
    /// ring held is of that epoch, or a later one (fetched from the master
    /// after the answer, as a worker does while members register one after
    /// another), the lease runs on from `sent`. A ring older than the
    /// master's renews nothing: its roles may have been handed on.
    pub fn renew_lease(&self, sent: std::time::Instant, epoch: u64) {
        if self.ring.load().epoch() >= epoch {
            self.lease.renew(sent);
        }
    }

    /// The master says its epoch is `epoch`. If the ring routed by is of
    /// that epoch or older, it is the master's, and the keys of ranges it
    /// gives away since the last confirmed ring (copied to their new owners
    /// before the master published it) are deleted in the background.
    pub fn confirm_epoch(self: &Arc<Self>, epoch: u64) {
        let new = self.ring.load_full();
        if new.epoch() > epoch {
            // Not the master's (yet): the heartbeat fetches the master's.
            return;
        }
        let old = {
            let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
            if Arc::ptr_eq(&confirmed, &new) || **confirmed == *new {
                return;
            }
            std::mem::replace(&mut *confirmed, new.clone())
        };
        let elsewhere: Vec<KeyHashRange> =
            new.chains().into_iter().filter(|(_, chain)| !chain.contains(self.id)).map(|(r, _)| r).collect();
        let lost: Vec<KeyHashRange> = old
            .ranges_held_by(self.id)
            .into_iter()
            .flat_map(|mine| elsewhere.iter().filter_map(move |theirs| intersect(mine, *theirs)).flatten())
            .collect();
        let Some(dropping) = self.copied_in.confirmed(!lost.is_empty()) else { return };
        // Writes of those keys still marked here end up with their new
        // holders, whole.
        self.chain.pending.forget(&lost);
        let state = self.clone();
        let mut background = self.background.lock().unwrap_or_else(|p| p.into_inner());
        background.retain(|t| !t.is_finished());
        background.push(std::thread::spawn(move || state.drop_ranges(dropping, &lost)));
    }

    /// Forgets the keys of `ranges`, unless a newer ring gave them back or
    /// they were copied in again since (see [`given_away`]).
    fn drop_ranges(&self, dropping: given_away::Dropping, ranges: &[KeyHashRange]) {
        match self.store.get() {
            Ok(store) => {
                // Left behind, the keys only take space: the ring routes
                // them elsewhere and the next ring change retries.
                if let Err(e) =
                    given_away::drop_keys(&self.copied_in, &dropping, &store, ranges, self.id, || self.ring())
                {
                    tracing::error!(ranges = ranges.len(), error = %e, "dropping the keys of ranges given away");
                }
            }
            // Left behind, as above; a reopened store drops them at the next
            // ring change.
            Err(_) => tracing::warn!(
                ranges = ranges.len(),
                "the store is out of service; keys of ranges given away stay behind"
            ),
        }
        self.copied_in.finished(dropping);
    }

    /// Refuses writes to keys in `ranges` until the next ring, or until
    /// [`FENCE_LEASE`] passes without the fence being set again.
    ///
    /// Returns once every write that passed its fence check before the
    /// fence went up has finished (is durable per the sync mode): a copy of
    /// the fenced ranges taken after this sees them all.
    pub async fn fence(&self, ranges: Vec<KeyHashRange>) {
        self.fences.store(Arc::new((ranges, std::time::Instant::now() + FENCE_LEASE)));
        // The gate is fair: writes arriving now queue behind this, then see
        // the new fences.
        drop(self.write_gate.write().await);
    }

    /// Holds the write gate (see [`WorkerState::admit_write`]) for a caller
    /// that checks its writes itself.
    pub(crate) async fn write_gate(&self) -> WriteGate<'_> {
        self.write_gate.read().await
    }

    /// Checks a write to `key` (routed by `epoch`) against the ring and the
    /// fences, and holds the write gate until the guard returned drops, so
    /// that a fence put up meanwhile waits for the write to finish.
    pub(crate) async fn admit_write(&self, key: &[u8], epoch: u64) -> Result<WriteGate<'_>, Failure> {
        let gate = self.write_gate.read().await;
        self.route_write(key, epoch)?;
        Ok(gate)
    }

    /// Carries out one put or delete (routed here, the write gate held) on
    /// this worker and the rest of its key's chain.
    pub(crate) async fn write_one(self: &Arc<Self>, op: Op) -> Result<Applied, Failure> {
        chain::apply_at_head(self, vec![op])
            .await?
            .pop()
            .unwrap_or_else(|| Err(Failure::Unavailable("the store gave no answer".into())))
    }

    /// What `read` reads of `key` from the store once no write of the key
    /// is on its way down the chain from here (see `chain::pending`): a
    /// value the tail holds too. Read again if a write came meanwhile;
    /// `unavailable` if the key stays dirty for a
    /// [`CALL`](wimpy_net::deadline::CALL).
    pub(crate) async fn read_committed<T>(
        &self,
        key: &[u8],
        mut read: impl FnMut(&Store) -> wimpy_store::Result<T>,
    ) -> Result<T, Failure> {
        let store = self.store()?;
        if self.ring.load().replicas() == 1 {
            return read(&store).map_err(refusal);
        }
        let h = wimpy_schema::key_hash(key);
        let mut waited = false;
        loop {
            if !self.chain.pending.is_clean(h) {
                waited = true;
                self.chain.pending.clean(h, wimpy_net::deadline::CALL).await?;
            }
            let value = read(&store).map_err(refusal)?;
            // Marked before stored: a write this read saw is marked by now.
            if self.chain.pending.is_clean(h) {
                // A wait may have outlasted the lease the read began under.
                if waited {
                    self.lease.check(self.id)?;
                }
                return Ok(value);
            }
        }
    }

    /// Whether a write to `key` may go ahead now. Writes check through
    /// [`WorkerState::admit_write`]; a batch holds the gate itself.
    pub(crate) fn route_write(&self, key: &[u8], epoch: u64) -> Result<(), Failure> {
        let h = wimpy_schema::key_hash(key);
        self.route_hash(h, epoch, Serves::Writes)?;
        let fences = self.fences.load();
        if !fences.0.is_empty() && std::time::Instant::now() < fences.1 && fences.0.iter().any(|r| r.contains(h)) {
            // Moving: the client retries and reaches the new owner once the
            // ring flips.
            return Err(Failure::StaleEpoch(self.ring.load().epoch()));
        }
        Ok(())
    }

    /// Whether this worker serves reads of `key` (it is on the key's
    /// chain) for a caller that routed by `epoch`.
    pub(crate) fn route(&self, key: &[u8], epoch: u64) -> Result<(), Failure> {
        self.route_hash(wimpy_schema::key_hash(key), epoch, Serves::Reads)
    }

    /// Whether this worker serves `what` of the key hashed `h`.
    fn route_hash(&self, h: u64, epoch: u64, what: Serves) -> Result<(), Failure> {
        let ring = self.ring.load();
        if ring.is_empty() {
            return Err(Failure::Unavailable("this worker is not on a ring yet".into()));
        }
        let chain = ring.chain_of_hash(h);
        let serves = match what {
            Serves::Writes => chain.head() == Some(self.id),
            Serves::Reads => chain.contains(self.id),
        };
        // A caller ahead of us, or one whose ring sends the key elsewhere,
        // must refresh (or wait for us to catch up) and retry.
        if epoch > ring.epoch() || !serves {
            return Err(Failure::StaleEpoch(ring.epoch()));
        }
        // With more copies, another member may have this one's role by now
        // unless the master stood behind its ring lately (see [`lease`]).
        if ring.replicas() > 1 {
            self.lease.check(self.id)?;
        }
        if let Serves::Writes = what
            && !ring.takes_writes(&chain)
        {
            return Err(Failure::Unavailable(format!(
                "only {} of this key's {} copies are in service; its writes wait until its chain is repaired",
                chain.len(),
                ring.replicas()
            )));
        }
        Ok(())
    }
}

/// What a request asks of a key's chain: writes enter at its head, reads
/// are served by every member.
#[derive(Debug, Clone, Copy)]
enum Serves {
    Reads,
    Writes,
}

/// Serves `state` on `listener` with `cores` threads until `shutdown`
/// resolves; then closes every connection and returns.
pub async fn run(
    listener: TcpListener,
    state: Arc<WorkerState>,
    security: Security,
    cores: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cores = cores.max(1);
    state.chain.serve_as(state.id, &security);
    let mut lanes = Vec::with_capacity(cores);
    let mut threads = Vec::with_capacity(cores);
    for core in 0..cores {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let (streams_tx, streams) = tokio::sync::mpsc::unbounded_channel();
        state.chain.host_streams(streams_tx);
        let (state, security) = (state.clone(), security.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("wimpy-rpc-{core}"))
                .spawn(move || serve_core(state, security, rx, streams))?,
        );
        lanes.push(tx);
    }
    // Writes a failed member did not pass on go down the chain again once
    // it has closed over the member.
    let repairer = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(chain::REPAIR_EVERY).await;
                let sent = chain::resend_doubtful(&state).await;
                if sent > 0 {
                    tracing::info!(keys = sent, "sent doubtful writes down their chains again");
                }
            }
        })
    };
    tokio::pin!(shutdown);
    let mut next = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                stream.set_nodelay(true)?;
                let stream = stream.into_std()?;
                if lanes[next].send(stream).is_err() {
                    break;
                }
                next = (next + 1) % cores;
            }
            _ = &mut shutdown => break,
        }
    }
    drop(lanes);
    repairer.abort();
    let _ = repairer.await;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            if t.join().is_err() {
                tracing::error!("an RPC thread panicked");
            }
        }
    })
    .await
    .map_err(std::io::Error::other)
}

/// One core: a current-thread runtime whose `LocalSet` runs every connection
/// and chain stream handed to it, until the accept loop goes away.
fn serve_core(
    state: Arc<WorkerState>,
    security: Security,
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    mut streams: tokio::sync::mpsc::UnboundedReceiver<chain::StreamStart>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start an RPC thread's runtime; its connections are dropped");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        loop {
            tokio::select! {
                stream = incoming.recv() => {
                    let Some(stream) = stream else { break };
                    let (state, security) = (state.clone(), security.clone());
                    tokio::task::spawn_local(async move {
                        // Peers hang up as they please: worth a debug line, no more.
                        if let Err(e) = serve_connection(stream, state, &security).await {
                            tracing::debug!(error = %e, "connection ended");
                        }
                    });
                }
                Some(start) = streams.recv() => {
                    tokio::task::spawn_local(start.run());
                }
            }
        }
    });
}

async fn serve_connection(
    stream: std::net::TcpStream,
    state: Arc<WorkerState>,
    security: &Security,
) -> std::io::Result<()> {
    stream.set_nonblocking(true)?;
    wimpy_net::serve(tokio::net::TcpStream::from_std(stream)?, security, |peer| {
        // A service per connection, which counts that connection's calls
        // and knows who is calling.
        let service: worker::Client =
            capnp_rpc::new_client(WorkerService { state, peer: peer.clone(), calls: Default::default() });
        service.client
    })
    .await
}

/// The `Worker` interface on one connection.
struct WorkerService {
    state: Arc<WorkerState>,
    /// Who is at the other end, as its certificate says.
    peer: Peer,
    /// Data-plane calls of this connection in flight.
    calls: ConnectionCalls,
}

impl WorkerService {
    /// Admits a data-plane call, or refuses it as `overloaded`.
    fn admit(&self) -> Result<Admitted<'_>, Failure> {
        self.state.intake.admit(&self.calls)
    }
}

/// What `store` says about itself: its figures now and what its last
/// recovery stepped over.
fn store_figures(store: &Store) -> StoreFigures {
    let s = store.stats();
    let damage = &store.recovery_report().damage;
    StoreFigures {
        live_keys: s.live_keys,
        log_bytes: s.log_bytes,
        garbage_bytes: s.garbage_bytes,
        index_bytes: s.index_bytes,
        damage: damage
            .iter()
            .take(wimpy_schema::MAX_REPORTED_DAMAGE)
            .map(|d| DamagedSpan { segment: d.segment, offset: d.at, bytes: d.bytes, reason: d.reason.into() })
            .collect(),
        damaged_spans: damage.len() as u64,
    }
}

/// Runs `op` on `store`: on the blocking pool when it `writes` and writes
/// wait for an fsync (so one slow flush does not stall a core), inline
/// otherwise.
pub(crate) async fn on_store<T: Send + 'static>(
    store: &Arc<Store>,
    writes: bool,
    op: impl FnOnce(&Store) -> T + Send + 'static,
) -> Result<T, Failure> {
    if writes && store.options().sync == SyncMode::Always {
        let store = store.clone();
        tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| Failure::storage(StorageKind::Io, format!("store task failed: {e}")))
    } else {
        Ok(op(store))
    }
}

impl worker::Server for WorkerService {
    async fn get(
        self: Rc<Self>,
        params: worker::GetParams,
        mut results: worker::GetResults,
    ) -> Result<(), capnp::Error> {
        let _admitted = match self.admit() {
            Ok(admitted) => admitted,
            Err(f) => return refuse(f, results.get().init_result().init_failure()),
        };
        let p = params.get()?;
        let key = p.get_key()?;
        let mut r = results.get().init_result();
        // The value goes from the log's read buffer straight into the
        // answer: a 1 MiB value is copied once here, not twice.
        let read = |store: &Store| {
            store.with_value(key, |v| {
                if v.len() > MAX_INLINE_VALUE {
                    return Err(v.len());
                }
                r.set_value(v);
                Ok(())
            })
        };
        let outcome = match self.state.route(key, p.get_epoch()) {
            Ok(()) => self.state.read_committed(key, read).await,
            Err(f) => Err(f),
        };
        match outcome {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(len))) => Failure::TooLarge {
                kind: LimitKind::ValueNeedsStream,
                limit: MAX_INLINE_VALUE as u64,
                actual: len as u64,
            }
            .write(r.init_failure()),
            Ok(None) => r.set_not_found(()),
            Err(refusal) => refusal.write(r.init_failure()),
        }
        Ok(())
    }

    async fn put(
        self: Rc<Self>,
        params: worker::PutParams,
        mut results: worker::PutResults,
    ) -> Result<(), capnp::Error> {
        let _admitted = match self.admit() {
            Ok(admitted) => admitted,
            Err(f) => return refuse(f, results.get().init_result().init_failure()),
        };
        let p = params.get()?;
        let key = p.get_key()?.to_vec();
        let value = p.get_value()?.to_vec();
        let outcome = match self.state.admit_write(&key, p.get_epoch()).await {
            Ok(_gate) => self.state.write_one(Op::Put(key, value)).await,
            Err(refusal) => Err(refusal),
        };
        let mut r = results.get().init_result();
        match outcome {
            Ok(_) => r.set_ok(()),
            Err(refusal) => refusal.write(r.init_failure()),
        }
        Ok(())
    }

    async fn delete(
        self: Rc<Self>,
        params: worker::DeleteParams,
        mut results: worker::DeleteResults,
    ) -> Result<(), capnp::Error> {
        let _admitted = match self.admit() {
            Ok(admitted) => admitted,
            Err(f) => return refuse(f, results.get().init_result().init_failure()),
        };
        let p = params.get()?;
        let key = p.get_key()?.to_vec();
        let outcome = match self.state.admit_write(&key, p.get_epoch()).await {
            Ok(_gate) => self.state.write_one(Op::Delete(key)).await,
            Err(refusal) => Err(refusal),
        };
        let mut r = results.get().init_result();
        match outcome {
            Ok(Applied::Deleted(was)) => r.set_deleted(was),
            Ok(other) => {
                return Err(capnp::Error::failed(format!("the store answered a delete with {other:?}")));
            }
            Err(refusal) => refusal.write(r.init_failure()),
        }
        Ok(())
    }

    async fn stats(
        self: Rc<Self>,
        _: worker::StatsParams,
        mut results: worker::StatsResults,
    ) -> Result<(), capnp::Error> {
        let mut r = results.get();
        r.set_epoch(self.state.ring().epoch());
        self.state.figures().write(r.init_stats());
        Ok(())
    }

    async fn ring(self: Rc<Self>, _: worker::RingParams, mut results: worker::RingResults) -> Result<(), capnp::Error> {
        self.state.published.load().write(results.get().init_ring());
        Ok(())
    }

    async fn get_stream(
        self: Rc<Self>,
        params: worker::GetStreamParams,
        mut results: worker::GetStreamResults,
    ) -> Result<(), capnp::Error> {
        let _admitted = match self.admit() {
            Ok(admitted) => admitted,
            Err(f) => return refuse(f, results.get().init_result().init_failure()),
        };
        let p = params.get()?;
        let key = p.get_key()?;
        let sink = p.get_sink()?;
        // Read whole, then streamed: a slow reader holds up no write.
        let outcome = match self.state.route(key, p.get_epoch()) {
            Ok(()) => self.state.read_committed(key, |s| s.get(key)).await,
            Err(f) => Err(f),
        };
        let sent = match &outcome {
            Ok(Some(v)) => Some(streams::send_value(v, &sink).await?),
            _ => None,
        };
        let mut r = results.get().init_result();
        match (outcome, sent) {
            (Ok(Some(_)), Some(n)) => r.set_streamed(n),
            (Ok(_), _) => r.set_not_found(()),
            (Err(refusal), _) => refusal.write(r.init_failure()),
        }
        Ok(())
    }

    async fn put_stream(
        self: Rc<Self>,
        params: worker::PutStreamParams,
        mut results: worker::PutStreamResults,
    ) -> Result<(), capnp::Error> {
        // The upload's bytes are counted as they arrive, not the call.
        if let Err(f) = self.admit() {
            return refuse(f, results.get().init_failure());
        }
        let p = params.get()?;
        let key = p.get_key()?.to_vec();
        let refused = match self.state.route_write(&key, p.get_epoch()) {
            Ok(()) => match streams::Upload::new(self.state.clone(), key, p.get_size(), p.get_epoch()) {
                Ok(upload) => {
                    let client: wimpy_schema::wimpy_capnp::value_upload::Client = capnp_rpc::new_client(upload);
                    results.get().set_upload(client);
                    return Ok(());
                }
                Err(refusal) => refusal,
            },
            Err(refusal) => refusal,
        };
        refused.write(results.get().init_failure());
        Ok(())
    }

    async fn compute(
        self: Rc<Self>,
        params: worker::ComputeParams,
        mut results: worker::ComputeResults,
    ) -> Result<(), capnp::Error> {
        let _admitted = match self.admit() {
            Ok(admitted) => admitted,
            Err(f) => return refuse(f, results.get().init_result().init_failure()),
        };
        compute::compute(&self.state, params, results).await
    }

    async fn compute_batch(
        self: Rc<Self>,
        params: worker::ComputeBatchParams,
        mut results: worker::ComputeBatchResults,
    ) -> Result<(), capnp::Error> {
        let _admitted = match self.admit() {
            Ok(admitted) => admitted,
            Err(f) => {
                let n = params.get()?.get_keys()?.len();
                let mut list = results.get().init_results(n);
                for i in 0..n {
                    f.write(list.reborrow().get(i).init_failure());
                }
                return Ok(());
            }
        };
        compute::compute_batch(&self.state, params, results).await
    }

    async fn backends(
        self: Rc<Self>,
        _: worker::BackendsParams,
        mut results: worker::BackendsResults,
    ) -> Result<(), capnp::Error> {
        let infos = self.state.engine.backends();
        let mut list = results.get().init_backends(infos.len() as u32);
        for (i, info) in infos.iter().enumerate() {
            let mut b = list.reborrow().get(i as u32);
            b.set_backend(wimpy_schema::job::wire::backend_to_wire(Some(info.kind)));
            b.set_device(&info.device);
            b.set_software(info.software);
        }
        Ok(())
    }

    async fn batch(
        self: Rc<Self>,
        params: worker::BatchParams,
        mut results: worker::BatchResults,
    ) -> Result<(), capnp::Error> {
        let _admitted = match self.admit() {
            Ok(admitted) => admitted,
            Err(f) => {
                let n = params.get()?.get_ops()?.len();
                write_answers(results.get().init_results(n), vec![KeyAnswer::Failed(f); n as usize]);
                return Ok(());
            }
        };
        batch::batch(&self.state, params, results).await
    }

    async fn admin(
        self: Rc<Self>,
        _: worker::AdminParams,
        mut results: worker::AdminResults,
    ) -> Result<(), capnp::Error> {
        match self.state.admits_as_master(&self.peer) {
            Ok(()) => {
                let admin: worker_admin::Client =
                    capnp_rpc::new_client(WorkerAdminService { state: self.state.clone() });
                results.get().set_admin(admin);
            }
            Err(refused) => {
                tracing::warn!("refused the membership calls to {}: {refused:?}", self.peer);
                refused.write(results.get().init_refused());
            }
        }
        Ok(())
    }

    async fn chain(
        self: Rc<Self>,
        params: worker::ChainParams,
        mut results: worker::ChainResults,
    ) -> Result<(), capnp::Error> {
        if !self.peer.holds(Role::Worker) {
            let refused = Failure::forbidden("Worker.chain", Role::Worker, &self.peer);
            tracing::warn!("refused the chain link to {}: {refused:?}", self.peer);
            refused.write(results.get().init_refused());
            return Ok(());
        }
        let p = params.get()?;
        let link: wimpy_schema::wimpy_capnp::chain_link::Client =
            capnp_rpc::new_client(chain::ChainLinkService::new(self.state.clone(), p.get_from(), p.get_generation()));
        results.get().set_link(link);
        Ok(())
    }
}

/// The membership calls on this worker, handed out by `Worker.admin` to
/// the master alone.
struct WorkerAdminService {
    state: Arc<WorkerState>,
}

impl worker_admin::Server for WorkerAdminService {
    async fn set_ring(
        self: Rc<Self>,
        params: worker_admin::SetRingParams,
        _: worker_admin::SetRingResults,
    ) -> Result<(), capnp::Error> {
        self.state.set_ring(RingInfo::read(params.get()?.get_ring()?)?);
        Ok(())
    }

    async fn send_range(
        self: Rc<Self>,
        params: worker_admin::SendRangeParams,
        mut results: worker_admin::SendRangeResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let r = p.get_range()?;
        let ranges = vec![KeyHashRange::new(r.get_start(), r.get_end())];
        let sent = self.send(ranges, p.get_sink()?, transfer::Pass::default()).await?;
        results.get().set_records(sent);
        Ok(())
    }

    async fn send_ranges(
        self: Rc<Self>,
        params: worker_admin::SendRangesParams,
        mut results: worker_admin::SendRangesResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let pass = transfer::Pass { after: p.get_after(), bytes_per_second: p.get_bytes_per_second() };
        // Taken before the scan begins: every write numbered up to it is
        // in the log the scan reads.
        let store = self.state.store.get().map_err(transfer::store_out_of_service)?;
        let up_to = self.state.chain.numbering.stored_up_to(|| store.max_version());
        let sent = self.send(wimpy_schema::ranges::read(p.get_ranges()?), p.get_sink()?, pass).await?;
        let mut r = results.get();
        r.set_records(sent);
        r.set_up_to(up_to);
        Ok(())
    }

    async fn receive_range(
        self: Rc<Self>,
        params: worker_admin::ReceiveRangeParams,
        mut results: worker_admin::ReceiveRangeResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        // A version 1 master names no range and replaces nothing.
        let range = match p.has_range() {
            true => {
                let r = p.get_range()?;
                KeyHashRange::new(r.get_start(), r.get_end())
            }
            false => KeyHashRange::ALL,
        };
        results.get().set_sink(self.receiver(vec![range], p.get_replace()));
        Ok(())
    }

    async fn receive_ranges(
        self: Rc<Self>,
        params: worker_admin::ReceiveRangesParams,
        mut results: worker_admin::ReceiveRangesResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let ranges = wimpy_schema::ranges::read(p.get_ranges()?);
        let sink = match (p.get_newer_only(), p.get_replace()) {
            (true, true) => {
                return Err(capnp::Error::failed("a sink that takes newer records only replaces nothing".into()));
            }
            (true, false) => capnp_rpc::new_client(transfer::RangeReceiver::newer_only(self.state.store.clone())),
            (false, replace) => self.receiver(ranges, replace),
        };
        results.get().set_sink(sink);
        Ok(())
    }

    async fn digest_ranges(
        self: Rc<Self>,
        params: worker_admin::DigestRangesParams,
        mut results: worker_admin::DigestRangesResults,
    ) -> Result<(), capnp::Error> {
        let ranges = wimpy_schema::ranges::read(params.get()?.get_ranges()?);
        let store = self.state.store.get().map_err(transfer::store_out_of_service)?;
        // Taken before the pass, as for sendRanges.
        let up_to = self.state.chain.numbering.stored_up_to(|| store.max_version());
        // A pass over the whole log: off the RPC thread.
        let digests = tokio::task::spawn_blocking(move || store.digest_ranges(&ranges))
            .await
            .map_err(|e| capnp::Error::failed(format!("digest task: {e}")))?
            .map_err(|e| capnp::Error::failed(format!("digesting ranges: {e}")))?;
        let mut list = results.get().init_digests(digests.len() as u32);
        for (i, d) in digests.iter().enumerate() {
            let mut b = list.reborrow().get(i as u32);
            b.set_records(d.records);
            b.set_digest(d.digest);
        }
        results.get().set_up_to(up_to);
        Ok(())
    }

    async fn fence(
        self: Rc<Self>,
        params: worker_admin::FenceParams,
        _: worker_admin::FenceResults,
    ) -> Result<(), capnp::Error> {
        self.state.fence(wimpy_schema::ranges::read(params.get()?.get_ranges()?)).await;
        Ok(())
    }
}

impl WorkerAdminService {
    /// Streams the records of `ranges` to `sink` (sendRange, sendRanges).
    async fn send(
        &self,
        ranges: Vec<KeyHashRange>,
        sink: record_sink::Client,
        pass: transfer::Pass,
    ) -> Result<u64, capnp::Error> {
        let store = self.state.store.get().map_err(transfer::store_out_of_service)?;
        transfer::send_ranges(store, ranges, sink, pass).await
    }

    /// A sink merging records of `ranges` into the store (receiveRange,
    /// receiveRanges).
    fn receiver(&self, ranges: Vec<KeyHashRange>, replace: bool) -> record_sink::Client {
        // Before any record arrives: a drop of keys given away spares them.
        self.state.copied_in.copying(&ranges);
        capnp_rpc::new_client(transfer::RangeReceiver::new(self.state.store.clone(), ranges, replace))
    }
}

/// Answers a call with `failure` (written into its result's failure).
fn refuse(failure: Failure, b: wimpy_schema::wimpy_capnp::failure::Builder<'_>) -> Result<(), capnp::Error> {
    failure.write(b);
    Ok(())
}

/// The overlap of two wrapping half-open ranges, as up to two ranges.
fn intersect(a: KeyHashRange, b: KeyHashRange) -> Option<Vec<KeyHashRange>> {
    // Unwrap both into plain [start, end) pieces of the u128 line, then
    // intersect piecewise.
    let pieces = |r: KeyHashRange| -> Vec<(u128, u128)> {
        let (s, e) = (r.start as u128, r.end as u128);
        if r.start < r.end { vec![(s, e)] } else { vec![(s, 1u128 << 64), (0, e)] }
    };
    let mut out = Vec::new();
    for (s1, e1) in pieces(a) {
        for (s2, e2) in pieces(b) {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if s < e {
                out.push(KeyHashRange::new(s as u64, if e == 1u128 << 64 { 0 } else { e as u64 }));
            }
        }
    }
    (!out.is_empty()).then_some(out)
}
