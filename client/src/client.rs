//! The routing client.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

pub use wimpy_net::BatchStats;
use wimpy_net::{Batcher, KeyPeer, Role, Security};
pub use wimpy_schema::MemberState;
use wimpy_schema::batch::{BATCHED_VALUE_LIMIT, KeyAnswer, KeyRequest};
use wimpy_schema::wimpy_capnp::{failure, leave_result, master, worker};
use wimpy_schema::{Failure, LimitKind, RangeMove, Ring, RingInfo, ScrubReport, WorkerId};

use crate::{ClientError, streams};

/// How a client behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Limit on one request, retries included.
    pub timeout: Duration,
    /// Attempts per request when the ring moves or a connection drops.
    pub attempts: u32,
    /// First pause between attempts; doubles each time.
    pub backoff: Duration,
    /// Send every request through the master (proxy mode, with its hot-key
    /// cache) instead of straight to the owning worker.
    pub via_master: bool,
    /// Send the gets, puts and deletes that tasks of this client have in
    /// flight to one worker together, as `Worker.batch` messages (see
    /// [`wimpy_net::batcher`]). Each request still succeeds or fails on
    /// its own. Off: one message per request.
    pub batching: bool,
    /// Other nodes to ask for the ring when the master does not answer:
    /// workers' addresses (any worker hands on the ring it holds) or
    /// another master's. The members of the last ring fetched are asked
    /// too. Reads and writes then go on while the master is away; calls
    /// only the master serves (status, leave, the proxy) do not.
    pub seeds: Vec<SocketAddr>,
    /// The credentials every connection presents (TLS with the cluster's
    /// CA), or insecure for a cluster run with `--insecure`.
    pub security: Security,
}

impl ClientOptions {
    /// The defaults, connecting with `security`.
    pub fn new(security: Security) -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempts: 6,
            backoff: Duration::from_millis(20),
            via_master: false,
            batching: true,
            seeds: Vec::new(),
            security,
        }
    }
}

/// A member of the ring: its id, address, state, and its store's figures
/// as of its last heartbeat (with what its last recovery stepped over).
pub type Member = wimpy_schema::MemberInfo;

/// The cluster as its master sees it.
#[derive(Clone, Debug)]
pub struct ClusterStatus {
    pub view: RingView,
    /// Members still receiving their ranges, not on the ring yet.
    pub joining: Vec<Member>,
    /// The copy a membership change is making now, if one is.
    pub moving: Option<RangeMove>,
    /// The scrub's last pass.
    pub scrub: ScrubReport,
}

/// The ring and its members' addresses, as of one epoch.
#[derive(Clone, Debug)]
pub struct RingView {
    pub ring: Ring,
    pub members: Vec<Member>,
}

impl RingView {
    fn member(&self, id: WorkerId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// A connection to a wimpy cluster.
pub struct Client {
    master_addr: SocketAddr,
    master: RefCell<Option<master::Client>>,
    ring: RefCell<Rc<RingView>>,
    /// One RPC connection per worker, with the address it went to; capnp
    /// multiplexes requests over it.
    pub(crate) workers: RefCell<BTreeMap<WorkerId, (String, worker::Client)>>,
    /// Requests waiting to go to each worker as one batch.
    batcher: Rc<Batcher<WorkerId, worker::Client>>,
    /// Requests waiting to go to the master's proxy as one batch.
    master_batcher: Rc<Batcher<(), master::Client>>,
    /// Reads so far: each goes to the next member of its key's chain, so
    /// that every copy serves its share.
    pub(crate) reads: std::cell::Cell<u64>,
    /// Compute jobs on their way to each worker, and the load it last
    /// reported: how the SDK picks which member of a chain runs a job.
    pub(crate) compute_load: RefCell<std::collections::HashMap<WorkerId, crate::compute::ComputeLoad>>,
    pub(crate) opts: ClientOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("master", &self.master_addr)
            .field("epoch", &self.ring.borrow().ring.epoch())
            .finish()
    }
}

/// What one attempt at a request came to.
pub(crate) enum Attempt<T> {
    Done(T),
    /// Routing was stale or the connection dropped: refresh and retry.
    Retry,
    /// The owner answered `overloaded`: back off and retry.
    Busy,
}

/// A number in [0, 1) that differs from call to call and thread to thread,
/// for spreading backoffs (no cryptographic use).
pub(crate) fn rand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Client {
    /// Connects to the master at `addr` with `security` and fetches the ring.
    pub async fn connect(addr: SocketAddr, security: Security) -> Result<Client, ClientError> {
        Client::connect_with(addr, ClientOptions::new(security)).await
    }

    pub async fn connect_with(addr: SocketAddr, opts: ClientOptions) -> Result<Client, ClientError> {
        let client = Client {
            master_addr: addr,
            master: RefCell::new(None),
            ring: RefCell::new(Rc::new(RingView { ring: Ring::empty(0, 1), members: Vec::new() })),
            workers: RefCell::new(BTreeMap::new()),
            batcher: Batcher::new(),
            master_batcher: Batcher::new(),
            reads: std::cell::Cell::new(0),
            compute_load: Default::default(),
            opts,
        };
        client.refresh_ring().await?;
        Ok(client)
    }

    /// How many batches this client sent to workers and the master,
    /// carrying how many requests (zero without batching).
    pub fn batch_stats(&self) -> BatchStats {
        self.batcher.stats() + self.master_batcher.stats()
    }

    /// The ring as last fetched.
    pub fn ring(&self) -> Rc<RingView> {
        self.ring.borrow().clone()
    }

    async fn master(&self) -> Result<master::Client, ClientError> {
        if let Some(m) = self.master.borrow().as_ref() {
            return Ok(m.clone());
        }
        let m: master::Client = self.open(&self.master_addr.to_string(), &[Role::Master]).await?;
        *self.master.borrow_mut() = Some(m.clone());
        Ok(m)
    }

    /// Fetches the ring: from the master, or, when it does not answer,
    /// from the first of the seeds and the members of the last ring that
    /// does (a worker hands on the ring it was given; it is taken only if
    /// no older than the one held). A master connection that broke since it
    /// was last used (the master restarted, say) is opened once more before
    /// the master counts as unreachable.
    pub async fn refresh_ring(&self) -> Result<Rc<RingView>, ClientError> {
        let info = match self.ring_from_master().await {
            Ok(info) => info,
            Err(e) if e.is_unavailable() => match self.ring_from_others().await {
                Some(info) => info,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let view = Rc::new(RingView::from(info));
        *self.ring.borrow_mut() = view.clone();
        Ok(view)
    }

    async fn ring_from_master(&self) -> Result<RingInfo, ClientError> {
        let reused = self.master.borrow().is_some();
        let resp = match self.ask_ring().await {
            Err(ClientError::Rpc(e)) if reused && e.kind == capnp::ErrorKind::Disconnected => self.ask_ring().await,
            asked => asked,
        }
        .map_err(|e| match e {
            ClientError::Rpc(e) => unreachable(&self.master_addr.to_string(), e),
            e => e,
        })?;
        Ok(RingInfo::read(resp.get()?.get_ring()?)?)
    }

    /// The ring as the first seed or known member that answers holds it.
    async fn ring_from_others(&self) -> Option<RingInfo> {
        let held = self.ring.borrow().clone();
        let mut asked: Vec<String> = self.opts.seeds.iter().map(|s| s.to_string()).collect();
        asked.extend(held.members.iter().map(|m| m.address.clone()));
        let mut seen = std::collections::BTreeSet::new();
        asked.retain(|a| seen.insert(a.clone()));
        for address in asked {
            let info = async {
                // Seeds may name the master or a worker; both hand out the ring.
                let peer: worker::Client =
                    wimpy_net::connect(&address, &self.opts.security, &[Role::Worker, Role::Master]).await.ok()?;
                let resp =
                    tokio::time::timeout(self.opts.timeout, peer.ring_request().send().promise).await.ok()?.ok()?;
                RingInfo::read(resp.get().ok()?.get_ring().ok()?).ok()
            }
            .await;
            match info {
                Some(info) if !info.members.is_empty() && info.epoch >= held.ring.epoch() => return Some(info),
                _ => tracing::debug!(node = address, "no ring from this node"),
            }
        }
        None
    }

    /// One `Master.ring` call; a failed one drops the connection.
    async fn ask_ring(&self) -> Result<capnp::capability::Response<master::ring_results::Owned>, ClientError> {
        let master = self.master().await?;
        master.ring_request().send().promise.await.map_err(|e| {
            *self.master.borrow_mut() = None;
            ClientError::Rpc(e)
        })
    }

    /// The full membership report of the master: the ring and joining members.
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        let master = self.master().await?;
        let resp =
            master.status_request().send().promise.await.map_err(|e| unreachable(&self.master_addr.to_string(), e))?;
        let r = resp.get()?;
        let view = RingView::from(RingInfo::read(r.get_ring()?)?);
        let joining = r.get_joining()?.iter().map(Member::read).collect::<Result<_, _>>()?;
        // A master before schema version 6 reports no moves.
        let moving = match r.has_moving() {
            true => r.get_moving()?.iter().next().map(RangeMove::read).transpose()?,
            false => None,
        };
        let scrub = match r.has_scrub() {
            true => ScrubReport::read(r.get_scrub()?)?,
            false => ScrubReport::default(),
        };
        Ok(ClusterStatus { view, joining, moving, scrub })
    }

    /// Runs a scrub pass now (an operator's call, admin role): every
    /// chain's copies compared range by range, and any that differs
    /// repaired. Answers once the pass is done.
    pub async fn scrub(&self) -> Result<ScrubReport, ClientError> {
        let master = self.master().await?;
        let resp =
            master.scrub_request().send().promise.await.map_err(|e| unreachable(&self.master_addr.to_string(), e))?;
        let r = resp.get()?;
        if r.has_refused() {
            return Err(Failure::read(r.get_refused()?)?.into());
        }
        Ok(ScrubReport::read(r.get_report()?)?)
    }

    /// Awaits an RPC answer within the client's time limit.
    async fn in_time<T>(&self, f: impl std::future::Future<Output = capnp::Result<T>>) -> Result<T, ClientError> {
        match tokio::time::timeout(self.opts.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *self.master.borrow_mut() = None;
                Err(unreachable(&self.master_addr.to_string(), e))
            }
            Err(_) => Err(ClientError::Timeout(self.opts.timeout)),
        }
    }

    /// Takes worker `id`, gone for good (down or failed: its disk died, or
    /// it was started again on an empty one), off the ring: each chain it
    /// was in takes on another member, which gets the chain's keys from
    /// the members that stayed. Refused for a worker still in service
    /// (have it [`Client::leave`]) and on a ring keeping one copy of each
    /// key (its keys are nowhere else).
    pub async fn remove(&self, id: WorkerId) -> Result<(), ClientError> {
        let view = self.refresh_ring().await?;
        let member = view.member(id).ok_or(ClientError::NoSuchWorker(id))?;
        if view.ring.replicas() < 2 {
            return Err(ClientError::Invalid(format!(
                "the ring keeps one copy of each key, so worker {id}'s keys are nowhere else; start it again on its data"
            )));
        }
        if member.state.is_up() {
            return Err(ClientError::Invalid(format!(
                "worker {id} is {}; a worker in service hands its keys over with leave",
                member.state
            )));
        }
        self.leave(id).await
    }

    /// Has worker `id` hand its ranges to the others and leave the ring.
    /// Returns once the handover is done; the worker can then be stopped.
    pub async fn leave(&self, id: WorkerId) -> Result<(), ClientError> {
        let mut req = self.master().await?.leave_request();
        req.get().set_id(id);
        // A handover copies the worker's data: allow it far longer than a request.
        let limit = self.opts.timeout.max(LEAVE_TIMEOUT);
        let resp = match tokio::time::timeout(limit, req.send().promise).await {
            Ok(resp) => resp?,
            Err(_) => return Err(ClientError::Timeout(limit)),
        };
        match resp.get()?.get_result()?.which()? {
            leave_result::Left(()) => {
                self.refresh_ring().await?;
                Ok(())
            }
            leave_result::NotMember(()) => Err(ClientError::NoSuchWorker(id)),
            leave_result::LastOnRing(()) => Err(ClientError::LastWorker(id)),
            leave_result::Failure(f) => Err(Failure::read(f?)?.into()),
        }
    }

    /// A one-time token with which a new worker joins the cluster
    /// (`wimpy-worker --join TOKEN`), valid for `ttl`. Needs an admin's
    /// certificate, and a master that holds the CA's key.
    pub async fn join_token(&self, ttl: Duration) -> Result<String, ClientError> {
        let mut req = self.master().await?.join_token_request();
        req.get().set_ttl_seconds(ttl.as_secs().clamp(1, u64::from(u32::MAX)) as u32);
        let resp = self.in_time(req.send().promise).await?;
        let r = resp.get()?;
        if r.has_refused() {
            return Err(Failure::read(r.get_refused()?)?.into());
        }
        r.get_token()?.to_string().map_err(|e| ClientError::Rpc(e.into()))
    }

    /// The worker that takes `what` of `key` under the cached ring: its
    /// owner (its chain's head) for writes; for reads, the next member of
    /// its chain in turn that serves.
    pub(crate) fn route(&self, key: &[u8], what: Route) -> Result<(u64, WorkerId), ClientError> {
        let view = self.ring.borrow();
        let owner = view.ring.owner(key).ok_or(ClientError::NoWorkers)?;
        if what == Route::AnyMember {
            let chain = view.ring.chain_of(key);
            let serves = |id: &&WorkerId| view.member(**id).is_some_and(|m| m.state.serves());
            let serving = chain.members().iter().filter(serves).count();
            if serving > 0 {
                let turn = self.reads.get();
                self.reads.set(turn.wrapping_add(1));
                let pick = chain.members().iter().filter(serves).nth((turn % serving as u64) as usize);
                if let Some(&id) = pick {
                    return Ok((view.ring.epoch(), id));
                }
            }
        }
        let m = view.member(owner).ok_or(ClientError::NoWorkers)?;
        if !m.state.serves() {
            return Err(ClientError::Unavailable(format!(
                "worker {} at {} is {} ({})",
                m.id, m.address, m.state, m.reason
            )));
        }
        Ok((view.ring.epoch(), owner))
    }

    /// The connection to worker `id`, opened (again) when there is none or
    /// the ring moved the worker to another address.
    pub(crate) async fn worker(&self, id: WorkerId) -> Result<worker::Client, ClientError> {
        let address = {
            let view = self.ring.borrow();
            let address = &view.member(id).ok_or(ClientError::NoWorkers)?.address;
            if let Some((at, w)) = self.workers.borrow().get(&id)
                && at == address
            {
                return Ok(w.clone());
            }
            address.clone()
        };
        let w: worker::Client = self.open(&address, &[Role::Worker]).await?;
        self.workers.borrow_mut().insert(id, (address, w.clone()));
        Ok(w)
    }

    /// Runs `attempt` (given the owner's connection, the epoch routed by and
    /// the owner's id) against the key's owner, refreshing the ring and
    /// retrying with backoff while routing is stale or a connection drops.
    async fn with_owner<T, F, Fut>(&self, key: &[u8], what: Route, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(worker::Client, u64, WorkerId) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, ClientError>>,
    {
        self.with_owner_within(self.opts.timeout, key, what, attempt).await
    }

    /// [`Client::with_owner`] with its own time limit (compute jobs may run
    /// longer than a get).
    pub(crate) async fn with_owner_within<T, F, Fut>(
        &self,
        limit: Duration,
        key: &[u8],
        what: Route,
        attempt: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(worker::Client, u64, WorkerId) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, ClientError>>,
    {
        let run = async {
            let mut pause = self.opts.backoff;
            let mut busy = false;
            // The last broken connection's error, if the tries end on one.
            let mut broke = None;
            for _ in 0..self.opts.attempts {
                let (epoch, owner) = self.route(key, what)?;
                let outcome = match self.worker(owner).await {
                    Ok(w) => attempt(w, epoch, owner).await,
                    Err(e) => Err(e),
                };
                busy = false;
                broke = None;
                match outcome {
                    Ok(Attempt::Done(v)) => return Ok(v),
                    Ok(Attempt::Retry) => {}
                    // The owner takes no more now: back off (by a random
                    // share of the pause, so that callers refused together
                    // do not come back together) and ask again.
                    Ok(Attempt::Busy) => busy = true,
                    Err(ClientError::Rpc(e)) if e.kind == capnp::ErrorKind::Overloaded => busy = true,
                    // The owner went away (its connection ended, or broke
                    // mid-answer): forget the connection; the master may
                    // already know where its keys went, or which other
                    // member of their chains serves them. Our servers
                    // answer refusals as typed failures, so an RPC error
                    // means the connection failed.
                    Err(ClientError::Rpc(e)) if e.kind != capnp::ErrorKind::Unimplemented => {
                        self.workers.borrow_mut().remove(&owner);
                        broke = Some(ClientError::Rpc(e));
                    }
                    Err(ClientError::Unreachable { .. }) => {
                        self.workers.borrow_mut().remove(&owner);
                    }
                    Err(e) => return Err(e),
                }
                if busy {
                    tokio::time::sleep(pause.mul_f64(0.5 + rand_unit())).await;
                    pause *= 2;
                    continue;
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
                self.refresh_ring().await?;
            }
            Err(match broke {
                _ if busy => ClientError::Overloaded,
                Some(e) => e,
                None => ClientError::Unsettled(self.opts.attempts),
            })
        };
        tokio::time::timeout(limit, run).await.map_err(|_| ClientError::Timeout(limit))?
    }

    /// The value stored under `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        outcome(self.call(KeyRequest::Get(key.to_vec())).await?, KeyAnswer::into_value)
    }

    /// Stores `value` under `key`; returns once the owner made it durable.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        outcome(self.call(KeyRequest::Put(key.to_vec(), value.to_vec())).await?, KeyAnswer::into_stored)
    }

    /// Removes `key`; returns whether it was there.
    pub async fn delete(&self, key: &[u8]) -> Result<bool, ClientError> {
        outcome(self.call(KeyRequest::Delete(key.to_vec())).await?, KeyAnswer::into_deleted)
    }

    /// The one transport of key requests: carries `request` to the
    /// cluster and brings back its answer. It goes to the key's owner, or
    /// in proxy mode to the master; in a batch, alone, or as a stream, as
    /// its size and [`ClientOptions::batching`] allow; and it goes again,
    /// another way, when the answer says to (a full batch answer, a value
    /// larger than one message). Stale routing and dropped connections are
    /// retried on the way.
    async fn call(&self, request: KeyRequest) -> Result<KeyAnswer, ClientError> {
        let mut carriage = match &request {
            // Through the master a put goes whole, never as a stream past
            // it: the master must see every write to keep its cache right.
            KeyRequest::Put(_, value) if value.len() > MAX_INLINE && !self.opts.via_master => Carriage::Streamed,
            KeyRequest::Put(_, value) if value.len() > BATCHED_VALUE_LIMIT => Carriage::Alone,
            _ if self.opts.batching => Carriage::Batched,
            _ => Carriage::Alone,
        };
        loop {
            // Streams go straight to the owner: the proxy takes none (a
            // get's stream is a read, which the proxy's cache need not see).
            let answer = if self.opts.via_master && carriage != Carriage::Streamed {
                self.to_master(&request, carriage).await?
            } else {
                self.to_owner(&request, carriage).await?
            };
            carriage = match (&answer, carriage) {
                (KeyAnswer::Failed(Failure::TooLarge { kind: LimitKind::BatchAnswerFull, .. }), Carriage::Batched) => {
                    Carriage::Alone
                }
                (KeyAnswer::Failed(Failure::TooLarge { kind: LimitKind::ValueNeedsStream, .. }), _)
                    if carriage != Carriage::Streamed && matches!(request, KeyRequest::Get(_)) =>
                {
                    Carriage::Streamed
                }
                _ => return Ok(answer),
            };
        }
    }

    /// `request` to the master's proxy, which routes (and retries stale
    /// routing) by itself; an owner's `overloaded` is retried after a
    /// backoff, a bounded number of times, as [`Client::to_owner`] does.
    async fn to_master(&self, request: &KeyRequest, carriage: Carriage) -> Result<KeyAnswer, ClientError> {
        let mut pause = self.opts.backoff;
        for attempt in 1..=self.opts.attempts {
            let master = self.master().await?;
            let answer = match carriage {
                Carriage::Batched => self.in_time(self.master_batcher.call((), &master, 0, request.clone())).await?,
                Carriage::Alone | Carriage::Streamed => self.in_time(master.send_one(0, request)).await?,
            };
            match answer {
                // The master settles routing itself; a stale answer from it is a bug there.
                KeyAnswer::Failed(Failure::StaleEpoch(_)) => return Err(ClientError::Unsettled(1)),
                KeyAnswer::Failed(Failure::Overloaded) if attempt < self.opts.attempts => {
                    tokio::time::sleep(pause.mul_f64(0.5 + rand_unit())).await;
                    pause *= 2;
                }
                answer => return Ok(answer),
            }
        }
        Err(ClientError::Overloaded)
    }

    /// `request` to the owner of its key, with a fresh ring and again while
    /// routing is stale or the connection drops.
    async fn to_owner(&self, request: &KeyRequest, carriage: Carriage) -> Result<KeyAnswer, ClientError> {
        let what = if matches!(request, KeyRequest::Get(_)) { Route::AnyMember } else { Route::Head };
        self.with_owner(request.key(), what, |w, epoch, owner| async move {
            let answer = match carriage {
                Carriage::Batched => self.batcher.call(owner, &w, epoch, request.clone()).await?,
                Carriage::Alone => w.send_one(epoch, request).await?,
                Carriage::Streamed => streams::send(&w, epoch, request).await?,
            };
            Ok(match answer {
                KeyAnswer::Failed(Failure::StaleEpoch(_)) => Attempt::Retry,
                KeyAnswer::Failed(Failure::Overloaded) => Attempt::Busy,
                answer => Attempt::Done(answer),
            })
        })
        .await
    }
}

/// What a request asks of a key's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Any member that serves: reads.
    AnyMember,
    /// The head: writes (and compute jobs).
    Head,
}

/// How one key request travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carriage {
    /// With whatever else is in flight to the same node, as one batch.
    Batched,
    /// In a message of its own.
    Alone,
    /// As a stream of chunks: a value larger than one message.
    Streamed,
}

/// Longest a `leave` may take: it waits for the worker's data to move.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest value sent or received in one message (the schema's
/// `maxInlineValue`); larger ones stream.
const MAX_INLINE: usize = wimpy_schema::wimpy_capnp::MAX_INLINE_VALUE as usize;

/// A request's outcome: what `want` takes from its answer, or the failure
/// the answer carries; an answer of another kind is a protocol error.
fn outcome<T>(answer: KeyAnswer, want: impl FnOnce(KeyAnswer) -> Result<T, KeyAnswer>) -> Result<T, ClientError> {
    match answer {
        KeyAnswer::Failed(f) => Err(f.into()),
        other => want(other).map_err(|a| ClientError::Invalid(format!("unexpected answer {a:?}"))),
    }
}

/// Turns a worker's `Failure` into a retry (stale routing) or an error.
pub(crate) fn failure_to<T>(f: failure::Reader<'_>) -> Result<Attempt<T>, ClientError> {
    match Failure::read(f)? {
        Failure::StaleEpoch(_) => Ok(Attempt::Retry),
        Failure::Overloaded => Ok(Attempt::Busy),
        other => Err(other.into()),
    }
}

fn unreachable(addr: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Unreachable { addr: addr.to_owned(), reason: e.to_string() }
}

impl From<RingInfo> for RingView {
    fn from(info: RingInfo) -> RingView {
        RingView { ring: info.ring(), members: info.members }
    }
}

impl Client {
    /// Opens a connection to `addr`, a node of one of the roles in
    /// `expect`. Must run inside a `LocalSet`.
    async fn open<C: capnp::capability::FromClientHook>(&self, addr: &str, expect: &[Role]) -> Result<C, ClientError> {
        wimpy_net::connect(addr, &self.opts.security, expect).await.map_err(|e| unreachable(addr, e))
    }
}
