//! Chain replication: each key is kept by the workers of its chain (the
//! ring's `replicas` of them). A write enters at the head, which numbers it
//! with a version, stores it, and forwards it to the next member through
//! that member's `ChainLink`; each member stores it, forwards it on, and
//! answers once the rest has answered, so the head acknowledges its client
//! only when the tail holds the write durably.
//!
//! Order: the head holds a lock on each key it writes (one of
//! [`KEY_LOCKS`] stripes) from numbering the write until the chain has
//! answered, so a key's next write is not numbered, let alone sent, before
//! its last one is held everywhere. Reads at the head take the same lock,
//! so they never answer a write the tail does not hold yet.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wimpy_net::deadline::{CALL, within};
use wimpy_net::{Role, Security};
use wimpy_schema::wimpy_capnp::{chain_link, chain_result, chain_write, worker};
use wimpy_schema::{Failure, WorkerId};
use wimpy_store::{Applied, Op};

use super::{WorkerState, on_store, refusal};

/// Stripes of the per-key write locks.
const KEY_LOCKS: usize = 1024;
/// Largest piece of a value in one forwarded write.
const PIECE_BYTES: usize = 1 << 20;
/// Value bytes per forwarded message (under the 8 MiB reader limit).
const MESSAGE_BYTES: usize = 4 << 20;
/// Bits of a version below the epoch: a head numbers up to 2^40 writes in
/// one epoch, and a head of a later epoch numbers above every earlier one.
const EPOCH_SHIFT: u32 = 40;

/// What the chain needs of a worker: its key locks, its version counter,
/// and how it reaches the next member.
#[derive(Debug)]
pub(crate) struct ChainState {
    locks: Vec<tokio::sync::Mutex<()>>,
    version: AtomicU64,
    security: std::sync::OnceLock<Security>,
}

impl Default for ChainState {
    fn default() -> Self {
        ChainState {
            locks: (0..KEY_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            version: AtomicU64::new(0),
            security: std::sync::OnceLock::new(),
        }
    }
}

impl ChainState {
    /// How this worker connects to the next member (set when it serves).
    pub(crate) fn set_security(&self, security: &Security) {
        let _ = self.security.set(security.clone());
    }

    /// Locks the stripes of `keys`, in stripe order (so two writers never
    /// wait on each other crosswise).
    pub(crate) async fn lock<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> =
            keys.into_iter().map(|k| (wimpy_schema::key_hash(k) % KEY_LOCKS as u64) as usize).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.locks[s].lock().await);
        }
        guards
    }

    /// The next version for a write numbered in `epoch`: above every
    /// version this worker has numbered or stored (`stored_max`), and
    /// above every version of an earlier epoch.
    fn next_version(&self, epoch: u64, stored_max: u64) -> u64 {
        let floor = (epoch.min((1 << (64 - EPOCH_SHIFT)) - 1) << EPOCH_SHIFT).max(stored_max);
        let mut current = self.version.load(Ordering::Acquire);
        loop {
            let next = current.max(floor) + 1;
            match self.version.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}

/// One write as it travels down a chain.
#[derive(Debug)]
struct Forwarded {
    key: Vec<u8>,
    version: u64,
    /// `None`: a delete.
    value: Option<Vec<u8>>,
}

impl Forwarded {
    /// The write `op` is, if it is a numbered one.
    fn of(op: Op) -> Option<Forwarded> {
        match op {
            Op::PutVersioned(key, value, version) => Some(Forwarded { key, version, value: Some(value) }),
            Op::DeleteVersioned(key, version) => Some(Forwarded { key, version, value: None }),
            _ => None,
        }
    }

    fn into_op(self) -> Op {
        match self.value {
            Some(v) => Op::PutVersioned(self.key, v, self.version),
            None => Op::DeleteVersioned(self.key, self.version),
        }
    }
}

/// Carries out `ops` (gets, puts and deletes, in order) on this worker as
/// the head of their keys' chains: numbers the writes, stores them, and
/// forwards them to the next member of each key's chain; a write's answer
/// is its outcome once every copy holds it. The caller has routed every
/// op here and holds the write gate.
pub(crate) async fn apply_at_head(
    state: &Arc<WorkerState>,
    ops: Vec<Op>,
) -> Result<Vec<Result<Applied, Failure>>, Failure> {
    let store = state.store()?;
    let writes = ops.iter().any(|op| !matches!(op, Op::Get(_)));
    let ring = state.ring();
    if ring.replicas() == 1 {
        let applied = on_store(&store, writes, move |s| apply(s, &ops)).await?;
        return Ok(applied.into_iter().map(|a| a.map_err(refusal)).collect());
    }
    let _locked = state.chain.lock(ops.iter().map(Op::key)).await;
    let mut numbered = Vec::with_capacity(ops.len());
    for op in ops {
        numbered.push(match op {
            Op::Put(k, v) => {
                let version = state.chain.next_version(ring.epoch(), store.max_version());
                Op::PutVersioned(k, v, version)
            }
            Op::Delete(k) => {
                let version = state.chain.next_version(ring.epoch(), store.max_version());
                Op::DeleteVersioned(k, version)
            }
            other => other,
        });
    }
    let (numbered, applied) = on_store(&store, writes, move |s| {
        let applied = apply(s, &numbered);
        (numbered, applied)
    })
    .await?;
    // Only what the head stored goes on: a write it refused fails alone.
    let mut stored = Vec::new();
    let mut answers = Vec::with_capacity(applied.len());
    for (op, answer) in numbered.into_iter().zip(applied) {
        let write = !matches!(op, Op::Get(_));
        if answer.is_ok() {
            stored.extend(Forwarded::of(op));
        }
        answers.push((answer, write));
    }
    let forwarded = forward_on(state, ring.epoch(), &ring, stored).await;
    Ok(answers
        .into_iter()
        .map(|(answer, write)| match answer {
            Err(e) => Err(refusal(e)),
            Ok(a) if write => forwarded.clone().map(|()| a),
            Ok(a) => Ok(a),
        })
        .collect())
}

/// Carries out `ops` on `store`. A lone write fails with its own error (a
/// batch's writes share one wait for durability, and a failed one fails
/// them all as the store's being out of service).
fn apply(store: &wimpy_store::Store, ops: &[Op]) -> Vec<wimpy_store::Result<Applied>> {
    match ops {
        [Op::Put(k, v)] => vec![store.put(k, v).map(|()| Applied::Stored)],
        [Op::PutVersioned(k, v, version)] => vec![store.put_versioned(k, v, *version).map(|()| Applied::Stored)],
        [Op::Delete(k)] => vec![store.delete(k).map(Applied::Deleted)],
        [Op::DeleteVersioned(k, version)] => vec![store.delete_versioned(k, *version).map(Applied::Deleted)],
        _ => store.apply(ops),
    }
}

/// Sends `writes` (stored here) to the next member of each one's chain
/// under `ring`, in order, and waits until every one has answered.
async fn forward_on(
    state: &Arc<WorkerState>,
    epoch: u64,
    ring: &wimpy_schema::Ring,
    writes: Vec<Forwarded>,
) -> Result<(), Failure> {
    let mut by_next: BTreeMap<WorkerId, Vec<Forwarded>> = BTreeMap::new();
    for w in writes {
        if let Some(next) = ring.chain_of(&w.key).successor(state.id) {
            by_next.entry(next).or_default().push(w);
        }
    }
    let sends = by_next.into_iter().map(|(next, writes)| async move {
        send(state, epoch, next, &writes).await.map_err(|e| match e {
            // Its ring or ours is not the newest: the client refreshes and
            // comes again, as for any ring change.
            Unsent::Refused(Failure::StaleEpoch(theirs)) => Failure::StaleEpoch(theirs.max(epoch)),
            Unsent::Refused(f) => {
                Failure::Unavailable(format!("the chain's next member, worker {next}, refused the writes: {f:?}"))
            }
            Unsent::Lost(e) => {
                Failure::Unavailable(format!("the chain's next member, worker {next}, did not take the writes: {e}"))
            }
        })
    });
    for outcome in futures::future::join_all(sends).await {
        outcome?;
    }
    Ok(())
}

thread_local! {
    /// Links to the next members this thread forwards to, by address
    /// (capnp clients stay on the thread that made them).
    static LINKS: RefCell<HashMap<String, chain_link::Client>> = RefCell::new(HashMap::new());
}

/// Why writes did not go down the chain.
enum Unsent {
    /// The next member answered with a failure.
    Refused(Failure),
    /// No answer: the link broke, or there was none to be had.
    Lost(String),
}

/// Forwards `writes` to worker `next`: pieces of at most [`PIECE_BYTES`],
/// messages of at most [`MESSAGE_BYTES`], each answered before the next
/// goes, so they arrive in order. A link kept from earlier that turns out
/// broken (the next member restarted, say) is made anew once, and the
/// writes sent again from the first: a member given a write twice, in
/// order, holds what it held after the first time.
async fn send(state: &Arc<WorkerState>, epoch: u64, next: WorkerId, writes: &[Forwarded]) -> Result<(), Unsent> {
    let address = state
        .published
        .load()
        .members
        .iter()
        .find(|m| m.id == next)
        .map(|m| m.address.clone())
        .ok_or_else(|| Unsent::Lost(format!("worker {next} is not on the ring this worker holds")))?;
    let kept = LINKS.with(|l| l.borrow().contains_key(&address));
    let mut sent = send_on(&link_to(state, &address).await.map_err(Unsent::Lost)?, epoch, writes).await;
    if kept && matches!(sent, Err(Unsent::Lost(_))) {
        LINKS.with(|l| l.borrow_mut().remove(&address));
        sent = send_on(&link_to(state, &address).await.map_err(Unsent::Lost)?, epoch, writes).await;
    }
    if matches!(sent, Err(Unsent::Lost(_))) {
        LINKS.with(|l| l.borrow_mut().remove(&address));
    }
    sent
}

/// [`send`] over `link`.
async fn send_on(link: &chain_link::Client, epoch: u64, writes: &[Forwarded]) -> Result<(), Unsent> {
    let mut pieces: Vec<(usize, usize, usize)> = Vec::new(); // (write, offset, len)
    for (i, w) in writes.iter().enumerate() {
        // A delete or an empty value is one piece of no bytes.
        let total = w.value.as_ref().map_or(0, Vec::len);
        pieces.push((i, 0, PIECE_BYTES.min(total)));
        let mut at = PIECE_BYTES;
        while at < total {
            pieces.push((i, at, PIECE_BYTES.min(total - at)));
            at += PIECE_BYTES;
        }
    }
    let mut start = 0;
    while start < pieces.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < pieces.len() && (end == start || bytes + pieces[end].2 <= MESSAGE_BYTES) {
            bytes += pieces[end].2;
            end += 1;
        }
        let mut req = link.forward_request();
        req.get().set_epoch(epoch);
        let mut list = req.get().init_writes((end - start) as u32);
        for (j, &(i, offset, len)) in pieces[start..end].iter().enumerate() {
            let w = &writes[i];
            let mut b = list.reborrow().get(j as u32);
            b.set_key(&w.key);
            b.set_version(w.version);
            match &w.value {
                None => b.set_delete(()),
                Some(v) => {
                    let mut put = b.init_put();
                    put.set_offset(offset as u64);
                    put.set_total(v.len() as u64);
                    put.set_bytes(&v[offset..offset + len]);
                }
            }
        }
        let lost = |e: capnp::Error| Unsent::Lost(e.to_string());
        let answer = within(CALL, "ChainLink.forward", req.send().promise).await.map_err(lost)?;
        let result = answer.get().map_err(lost)?.get_result().map_err(lost)?;
        match result.which().map_err(|e| Unsent::Lost(e.to_string()))? {
            chain_result::Ok(()) => {}
            chain_result::Failure(f) => return Err(Unsent::Refused(Failure::read(f.map_err(lost)?).map_err(lost)?)),
        }
        start = end;
    }
    Ok(())
}

/// This thread's link to the worker at `address`, connecting (as a
/// worker) if there is none.
async fn link_to(state: &Arc<WorkerState>, address: &str) -> Result<chain_link::Client, String> {
    if let Some(link) = LINKS.with(|l| l.borrow().get(address).cloned()) {
        return Ok(link);
    }
    let security = state.chain.security.get().ok_or("this worker is not serving")?;
    let w: worker::Client =
        wimpy_net::connect(address, security, &[Role::Worker]).await.map_err(|e| format!("connecting: {e}"))?;
    let answer = within(CALL, "Worker.chain", w.chain_request().send().promise).await.map_err(|e| e.to_string())?;
    let answer = answer.get().map_err(|e| e.to_string())?;
    if answer.has_refused() {
        let f = Failure::read(answer.get_refused().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        return Err(format!("{f:?}"));
    }
    let link = answer.get_link().map_err(|e| e.to_string())?;
    LINKS.with(|l| l.borrow_mut().insert(address.to_string(), link.clone()));
    Ok(link)
}

/// The link a worker's predecessor in a chain forwards writes through: one
/// per connection, holding the pieces of a value still arriving.
/// `Worker.chain` hands it to worker certificates alone.
pub(crate) struct ChainLinkService {
    state: Arc<WorkerState>,
    /// The write whose value's pieces are arriving, with the bytes so far.
    partial: RefCell<Option<Forwarded>>,
}

impl ChainLinkService {
    pub(crate) fn new(state: Arc<WorkerState>) -> ChainLinkService {
        ChainLinkService { state, partial: RefCell::new(None) }
    }

    /// The whole writes `list` completes, in order.
    fn assemble(&self, list: capnp::struct_list::Reader<'_, chain_write::Owned>) -> Result<Vec<Forwarded>, Failure> {
        let bad = |e: capnp::Error| Failure::Invalid(format!("a forwarded write: {e}"));
        let max_value = self.state.store()?.options().max_value_bytes;
        let mut whole = Vec::new();
        for w in list {
            let key = w.get_key().map_err(bad)?.to_vec();
            let version = w.get_version();
            if version == 0 {
                return Err(Failure::Invalid("a forwarded write without a version".into()));
            }
            match w.which().map_err(|e| Failure::Invalid(format!("a forwarded write: {e}")))? {
                chain_write::Delete(()) => whole.push(Forwarded { key, version, value: None }),
                chain_write::Put(put) => {
                    let (offset, total) = (put.get_offset() as usize, put.get_total() as usize);
                    let bytes = put.get_bytes().map_err(bad)?;
                    if total > max_value {
                        return Err(Failure::Invalid(format!(
                            "a forwarded value of {total} bytes is over {max_value}"
                        )));
                    }
                    let mut partial = self.partial.borrow_mut();
                    let mut value = match partial.take() {
                        Some(Forwarded { key: k, version: v, value: Some(so_far) })
                            if k == key && v == version && so_far.len() == offset =>
                        {
                            so_far
                        }
                        _ if offset == 0 => Vec::with_capacity(total),
                        _ => return Err(Failure::Invalid("a piece of a forwarded value came out of order".into())),
                    };
                    value.extend_from_slice(bytes);
                    if value.len() > total {
                        return Err(Failure::Invalid("a forwarded value is longer than it said".into()));
                    }
                    if value.len() == total {
                        whole.push(Forwarded { key, version, value: Some(value) });
                    } else {
                        *partial = Some(Forwarded { key, version, value: Some(value) });
                    }
                }
            }
        }
        Ok(whole)
    }

    async fn take(&self, epoch: u64, list: capnp::struct_list::Reader<'_, chain_write::Owned>) -> Result<(), Failure> {
        let ring = self.state.ring();
        if epoch != ring.epoch() {
            return Err(Failure::StaleEpoch(ring.epoch()));
        }
        let writes = self.assemble(list)?;
        for w in &writes {
            let chain = ring.chain_of(&w.key);
            if !chain.contains(self.state.id) || chain.head() == Some(self.state.id) {
                return Err(Failure::StaleEpoch(ring.epoch()));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let store = self.state.store()?;
        let ops: Vec<Op> = writes.into_iter().map(Forwarded::into_op).collect();
        let (ops, applied) = on_store(&store, true, move |s| {
            let applied = apply(s, &ops);
            (ops, applied)
        })
        .await?;
        if let Some(Err(e)) = applied.into_iter().find(|a| a.is_err()) {
            return Err(refusal(e));
        }
        forward_on(&self.state, epoch, &ring, ops.into_iter().filter_map(Forwarded::of).collect()).await
    }
}

impl chain_link::Server for ChainLinkService {
    async fn forward(
        self: Rc<Self>,
        params: chain_link::ForwardParams,
        mut results: chain_link::ForwardResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let outcome = self.take(p.get_epoch(), p.get_writes()?).await;
        let mut r = results.get().init_result();
        match outcome {
            Ok(()) => r.set_ok(()),
            Err(f) => f.write(r.init_failure()),
        }
        Ok(())
    }
}
