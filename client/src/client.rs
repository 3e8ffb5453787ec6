//! The routing client.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

pub use wimpy_net::BatchStats;
use wimpy_net::Batcher;
pub use wimpy_schema::MemberState;
use wimpy_schema::batch::{BATCH_ANSWER_FULL, BATCHED_VALUE_LIMIT, KeyAnswer, KeyRequest};
use wimpy_schema::wimpy_capnp::{byte_sink, delete_result, failure, get_result, master, member, worker, write_result};
use wimpy_schema::{Failure, Ring, WorkerId};

use crate::ClientError;

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempts: 6,
            backoff: Duration::from_millis(20),
            via_master: false,
            batching: true,
        }
    }
}

/// A member of the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: WorkerId,
    pub address: String,
    pub state: MemberState,
    pub live_keys: u64,
    pub log_bytes: u64,
    pub garbage_bytes: u64,
    pub index_bytes: u64,
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
    workers: RefCell<BTreeMap<WorkerId, (String, worker::Client)>>,
    /// Requests waiting to go to each worker as one batch.
    batcher: Rc<Batcher<WorkerId, worker::Client>>,
    /// Requests waiting to go to the master's proxy as one batch.
    master_batcher: Rc<Batcher<(), master::Client>>,
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
}

impl Client {
    /// Connects to the master at `addr` and fetches the ring.
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        Client::connect_with(addr, ClientOptions::default()).await
    }

    pub async fn connect_with(addr: SocketAddr, opts: ClientOptions) -> Result<Client, ClientError> {
        let client = Client {
            master_addr: addr,
            master: RefCell::new(None),
            ring: RefCell::new(Rc::new(RingView { ring: Ring::empty(0, 1), members: Vec::new() })),
            workers: RefCell::new(BTreeMap::new()),
            batcher: Batcher::new(),
            master_batcher: Batcher::new(),
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

    /// Sends `request` to the master's proxy in its next batch.
    async fn via_master_batched(&self, request: KeyRequest) -> Result<KeyAnswer, ClientError> {
        let master = self.master().await?;
        self.in_time(self.master_batcher.call((), &master, 0, request)).await
    }

    /// The ring as last fetched.
    pub fn ring(&self) -> Rc<RingView> {
        self.ring.borrow().clone()
    }

    async fn master(&self) -> Result<master::Client, ClientError> {
        if let Some(m) = self.master.borrow().as_ref() {
            return Ok(m.clone());
        }
        let m: master::Client = connect(&self.master_addr.to_string()).await?;
        *self.master.borrow_mut() = Some(m.clone());
        Ok(m)
    }

    /// Fetches the ring from the master.
    pub async fn refresh_ring(&self) -> Result<Rc<RingView>, ClientError> {
        let master = self.master().await?;
        let resp = match master.ring_request().send().promise.await {
            Ok(r) => r,
            Err(e) => {
                *self.master.borrow_mut() = None;
                return Err(unreachable(&self.master_addr.to_string(), e));
            }
        };
        let view = Rc::new(read_ring(resp.get()?.get_ring()?)?);
        *self.ring.borrow_mut() = view.clone();
        Ok(view)
    }

    /// The full membership report of the master: the ring and joining members.
    pub async fn status(&self) -> Result<(RingView, Vec<Member>), ClientError> {
        let master = self.master().await?;
        let resp =
            master.status_request().send().promise.await.map_err(|e| unreachable(&self.master_addr.to_string(), e))?;
        let r = resp.get()?;
        let view = read_ring(r.get_ring()?)?;
        let joining = r.get_joining()?.iter().map(read_member).collect::<Result<_, _>>()?;
        Ok((view, joining))
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

    /// Has worker `id` hand its ranges to the others and leave the ring.
    /// Returns once the handover is done; the worker can then be stopped.
    pub async fn leave(&self, id: WorkerId) -> Result<(), ClientError> {
        let mut req = self.master().await?.leave_request();
        req.get().set_id(id);
        // A handover copies the worker's data: allow it far longer than a request.
        let limit = self.opts.timeout.max(LEAVE_TIMEOUT);
        match tokio::time::timeout(limit, req.send().promise).await {
            Ok(Ok(_)) => {
                self.refresh_ring().await?;
                Ok(())
            }
            Ok(Err(e)) => Err(ClientError::Rpc(e)),
            Err(_) => Err(ClientError::Timeout(limit)),
        }
    }

    /// The worker owning `key` under the cached ring, with its address.
    pub(crate) fn route(&self, key: &[u8]) -> Result<(u64, WorkerId), ClientError> {
        let view = self.ring.borrow();
        let owner = view.ring.owner(key).ok_or(ClientError::NoWorkers)?;
        let m = view.member(owner).ok_or(ClientError::NoWorkers)?;
        if m.state == MemberState::Down {
            return Err(ClientError::Unavailable(format!("worker {} at {} is down", m.id, m.address)));
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
        let w: worker::Client = connect(&address).await?;
        self.workers.borrow_mut().insert(id, (address, w.clone()));
        Ok(w)
    }

    /// Runs `attempt` (given the owner's connection, the epoch routed by and
    /// the owner's id) against the key's owner, refreshing the ring and
    /// retrying with backoff while routing is stale or a connection drops.
    async fn with_owner<T, F, Fut>(&self, key: &[u8], attempt: F) -> Result<T, ClientError>
    where
        F: Fn(worker::Client, u64, WorkerId) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, ClientError>>,
    {
        self.with_owner_within(self.opts.timeout, key, attempt).await
    }

    /// [`Client::with_owner`] with its own time limit (compute jobs may run
    /// longer than a get).
    pub(crate) async fn with_owner_within<T, F, Fut>(
        &self,
        limit: Duration,
        key: &[u8],
        attempt: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(worker::Client, u64, WorkerId) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, ClientError>>,
    {
        let run = async {
            let mut pause = self.opts.backoff;
            for _ in 0..self.opts.attempts {
                let (epoch, owner) = self.route(key)?;
                let outcome = match self.worker(owner).await {
                    Ok(w) => attempt(w, epoch, owner).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(Attempt::Done(v)) => return Ok(v),
                    Ok(Attempt::Retry) => {}
                    // The owner went away: forget the connection; the master
                    // may already know where its keys went.
                    Err(ClientError::Rpc(e)) if e.kind == capnp::ErrorKind::Disconnected => {
                        self.workers.borrow_mut().remove(&owner);
                    }
                    Err(ClientError::Unreachable { .. }) => {
                        self.workers.borrow_mut().remove(&owner);
                    }
                    Err(e) => return Err(e),
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
                self.refresh_ring().await?;
            }
            Err(ClientError::Unsettled(self.opts.attempts))
        };
        tokio::time::timeout(limit, run).await.map_err(|_| ClientError::Timeout(limit))?
    }

    /// The value stored under `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        if self.opts.via_master {
            if self.opts.batching {
                let answer = self.via_master_batched(KeyRequest::Get(key.to_vec())).await?;
                if !answer.is_answer_full() {
                    return settled(answer_to(answer, KeyAnswer::into_value));
                }
                // The batch's answer was full: ask for this one on its own.
            }
            let mut req = self.master().await?.get_request();
            req.get().set_key(key);
            let resp = self.in_time(req.send().promise).await?;
            return match resp.get()?.get_result()?.which()? {
                get_result::Value(v) => Ok(Some(v?.to_vec())),
                get_result::NotFound(()) => Ok(None),
                get_result::Streamed(_) => Err(ClientError::Invalid("unexpected streamed answer".into())),
                get_result::Failure(f) => settled(failure_to(f?)),
            };
        }
        let mut got = self.get_direct(key, self.opts.batching).await;
        // The batch's answer was full: ask for this one on its own.
        if matches!(&got, Err(ClientError::TooLarge { what, .. }) if what == BATCH_ANSWER_FULL) {
            got = self.get_direct(key, false).await;
        }
        match got {
            // Larger than one message: fetch it as a stream.
            Err(ClientError::TooLarge { what, .. }) if what.contains("getStream") => self.get_stream(key).await,
            other => other,
        }
    }

    /// A get straight from the owner, in a batch or in a message of its own.
    async fn get_direct(&self, key: &[u8], batched: bool) -> Result<Option<Vec<u8>>, ClientError> {
        self.with_owner(key, |w, epoch, owner| async move {
            if batched {
                let answer = self.batcher.call(owner, &w, epoch, KeyRequest::Get(key.to_vec())).await?;
                return answer_to(answer, KeyAnswer::into_value);
            }
            let mut req = w.get_request();
            req.get().set_key(key);
            req.get().set_epoch(epoch);
            let resp = req.send().promise.await?;
            match resp.get()?.get_result()?.which()? {
                get_result::Value(v) => Ok(Attempt::Done(Some(v?.to_vec()))),
                get_result::NotFound(()) => Ok(Attempt::Done(None)),
                get_result::Streamed(_) => Err(ClientError::Invalid("unexpected streamed answer".into())),
                get_result::Failure(f) => failure_to(f?),
            }
        })
        .await
    }

    async fn get_stream(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        self.with_owner(key, |w, epoch, _| async move {
            let received = Rc::new(RefCell::new(Vec::new()));
            let sink: byte_sink::Client = capnp_rpc::new_client(Collector(received.clone()));
            let mut req = w.get_stream_request();
            req.get().set_key(key);
            req.get().set_epoch(epoch);
            req.get().set_sink(sink);
            let resp = req.send().promise.await?;
            match resp.get()?.get_result()?.which()? {
                get_result::Streamed(n) => {
                    let value = std::mem::take(&mut *received.borrow_mut());
                    if value.len() as u64 != n {
                        return Err(ClientError::Invalid(format!(
                            "stream announced {n} bytes, {} arrived",
                            value.len()
                        )));
                    }
                    Ok(Attempt::Done(Some(value)))
                }
                get_result::NotFound(()) => Ok(Attempt::Done(None)),
                get_result::Value(v) => Ok(Attempt::Done(Some(v?.to_vec()))),
                get_result::Failure(f) => failure_to(f?),
            }
        })
        .await
    }

    /// Stores `value` under `key`; returns once the owner made it durable.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        if self.opts.via_master {
            if self.opts.batching && value.len() <= BATCHED_VALUE_LIMIT {
                let answer = self.via_master_batched(KeyRequest::Put(key.to_vec(), value.to_vec())).await?;
                return settled(answer_to(answer, KeyAnswer::into_stored));
            }
            let mut req = self.master().await?.put_request();
            req.get().set_key(key);
            req.get().set_value(value);
            let resp = self.in_time(req.send().promise).await?;
            return match resp.get()?.get_result()?.which()? {
                write_result::Ok(()) => Ok(()),
                write_result::Failure(f) => settled(failure_to(f?)),
            };
        }
        if value.len() > MAX_INLINE {
            return self.put_stream(key, value).await;
        }
        let batched = self.opts.batching && value.len() <= BATCHED_VALUE_LIMIT;
        self.with_owner(key, |w, epoch, owner| async move {
            if batched {
                let answer = self.batcher.call(owner, &w, epoch, KeyRequest::Put(key.to_vec(), value.to_vec())).await?;
                return answer_to(answer, KeyAnswer::into_stored);
            }
            let mut req = w.put_request();
            req.get().set_key(key);
            req.get().set_value(value);
            req.get().set_epoch(epoch);
            let resp = req.send().promise.await?;
            match resp.get()?.get_result()?.which()? {
                write_result::Ok(()) => Ok(Attempt::Done(())),
                write_result::Failure(f) => failure_to(f?),
            }
        })
        .await
    }

    async fn put_stream(&self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        self.with_owner(key, |w, epoch, _| async move {
            let mut req = w.put_stream_request();
            req.get().set_key(key);
            req.get().set_size(value.len() as u64);
            req.get().set_epoch(epoch);
            let resp = req.send().promise.await?;
            let r = resp.get()?;
            if r.has_failure() {
                return failure_to(r.get_failure()?);
            }
            let upload = r.get_upload()?;
            for chunk in value.chunks(MAX_INLINE) {
                let mut w = upload.write_request();
                w.get().set_chunk(chunk);
                w.send().await?;
            }
            let done = upload.commit_request().send().promise.await?;
            match done.get()?.get_result()?.which()? {
                write_result::Ok(()) => Ok(Attempt::Done(())),
                write_result::Failure(f) => failure_to(f?),
            }
        })
        .await
    }

    /// Removes `key`; returns whether it was there.
    pub async fn delete(&self, key: &[u8]) -> Result<bool, ClientError> {
        if self.opts.via_master {
            if self.opts.batching {
                let answer = self.via_master_batched(KeyRequest::Delete(key.to_vec())).await?;
                return settled(answer_to(answer, KeyAnswer::into_deleted));
            }
            let mut req = self.master().await?.delete_request();
            req.get().set_key(key);
            let resp = self.in_time(req.send().promise).await?;
            return match resp.get()?.get_result()?.which()? {
                delete_result::Deleted(d) => Ok(d),
                delete_result::Failure(f) => settled(failure_to(f?)),
            };
        }
        self.with_owner(key, |w, epoch, owner| async move {
            if self.opts.batching {
                let answer = self.batcher.call(owner, &w, epoch, KeyRequest::Delete(key.to_vec())).await?;
                return answer_to(answer, KeyAnswer::into_deleted);
            }
            let mut req = w.delete_request();
            req.get().set_key(key);
            req.get().set_epoch(epoch);
            let resp = req.send().promise.await?;
            match resp.get()?.get_result()?.which()? {
                delete_result::Deleted(d) => Ok(Attempt::Done(d)),
                delete_result::Failure(f) => failure_to(f?),
            }
        })
        .await
    }
}

/// Longest a `leave` may take: it waits for the worker's data to move.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest value sent or received in one message (the schema's
/// `maxInlineValue`); larger ones stream.
const MAX_INLINE: usize = wimpy_schema::wimpy_capnp::MAX_INLINE_VALUE as usize;

/// Collects a value streamed to this client.
pub(crate) struct Collector(pub(crate) Rc<RefCell<Vec<u8>>>);

impl byte_sink::Server for Collector {
    async fn write(self: Rc<Self>, params: byte_sink::WriteParams) -> Result<(), capnp::Error> {
        self.0.borrow_mut().extend_from_slice(params.get()?.get_chunk()?);
        Ok(())
    }
    async fn done(self: Rc<Self>, _: byte_sink::DoneParams, _: byte_sink::DoneResults) -> Result<(), capnp::Error> {
        Ok(())
    }
}

/// The master settles routing itself; a stale answer from it is a bug there.
fn settled<T>(a: Result<Attempt<T>, ClientError>) -> Result<T, ClientError> {
    match a? {
        Attempt::Done(v) => Ok(v),
        Attempt::Retry => Err(ClientError::Unsettled(1)),
    }
}

/// A worker's answer to a batched request: its value when `want` accepts
/// it, a retry or an error for a failure, a protocol error for an answer
/// of another kind than was asked for.
fn answer_to<T>(
    answer: KeyAnswer,
    want: impl FnOnce(KeyAnswer) -> Result<T, KeyAnswer>,
) -> Result<Attempt<T>, ClientError> {
    match answer {
        KeyAnswer::Failed(f) => failure_into(f),
        other => want(other).map(Attempt::Done).map_err(|a| ClientError::Invalid(format!("unexpected answer {a:?}"))),
    }
}

/// Turns a worker's `Failure` into a retry (stale routing) or an error.
pub(crate) fn failure_to<T>(f: failure::Reader<'_>) -> Result<Attempt<T>, ClientError> {
    failure_into(Failure::read(f)?)
}

/// [`failure_to`] for a failure already read.
fn failure_into<T>(f: Failure) -> Result<Attempt<T>, ClientError> {
    Err(match f {
        Failure::StaleEpoch(_) => return Ok(Attempt::Retry),
        Failure::TooLarge { what, limit, actual } => ClientError::TooLarge { what, limit, actual },
        Failure::Invalid(m) => ClientError::Invalid(m),
        Failure::Unavailable(m) => ClientError::Unavailable(m),
        Failure::Overloaded => ClientError::Overloaded,
        Failure::Storage(m) => ClientError::Storage(m),
        Failure::Compute(c) => ClientError::Compute(c),
    })
}

fn unreachable(addr: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Unreachable { addr: addr.to_owned(), reason: e.to_string() }
}

fn read_member(m: member::Reader<'_>) -> Result<Member, ClientError> {
    let s = m.get_stats()?;
    Ok(Member {
        id: m.get_id(),
        address: m.get_address()?.to_string().map_err(|e| ClientError::Invalid(e.to_string()))?,
        state: m.get_state()?.into(),
        live_keys: s.get_live_keys(),
        log_bytes: s.get_log_bytes(),
        garbage_bytes: s.get_garbage_bytes(),
        index_bytes: s.get_index_bytes(),
    })
}

fn read_ring(r: wimpy_schema::wimpy_capnp::ring_info::Reader<'_>) -> Result<RingView, ClientError> {
    let members: Vec<Member> = r.get_members()?.iter().map(read_member).collect::<Result<_, _>>()?;
    let ring = Ring::new(r.get_epoch(), r.get_vnodes(), members.iter().map(|m| m.id));
    Ok(RingView { ring, members })
}

/// Opens a connection to `addr`. Must run inside a `LocalSet`.
async fn connect<C: capnp::capability::FromClientHook>(addr: &str) -> Result<C, ClientError> {
    wimpy_net::connect(addr).await.map_err(|e| unreachable(addr, e))
}
