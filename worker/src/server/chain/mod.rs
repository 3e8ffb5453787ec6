//! Chain replication: each key is kept by the workers of its chain (the
//! ring's `replicas` of them). A write enters at the head, which numbers it
//! with a version, stores it, and forwards it to the next member through
//! that member's `ChainLink`; each member stores it, forwards it on, and
//! answers once the rest has answered, so the head acknowledges its client
//! only when the tail holds the write durably.
//!
//! Order: the head holds a lock on each key it writes (one of
//! [`KEY_LOCKS`] stripes) while it numbers, stores and queues the write for
//! the next member, so a key's writes are queued in version order; each
//! next member's writes travel on one ordered stream ([`forwarder`]) and
//! are stored there in that order ([`link`]). Many writes are on their way
//! at once, and a member answers each once the rest of the chain has.
//!
//! Reads: a member with no write of a key on its way down the chain
//! ([`pending`]) answers from its own copy, which the tail holds too; a
//! key with one is read once the tail has answered for it. So every member
//! serves reads, and none answers a write the tail does not hold.

mod forwarder;
mod link;
mod numbering;
mod pending;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use wimpy_net::Security;
use wimpy_schema::{Failure, Ring, WorkerId, key_hash};
use wimpy_store::{Applied, Op};

pub(crate) use self::forwarder::StreamStart;
pub(crate) use self::link::ChainLinkService;
pub(crate) use self::pending::Pending;
use super::{WorkerState, on_store, refusal};

/// Stripes of the per-key write locks.
const KEY_LOCKS: usize = 1024;
/// Bits of a version below the epoch: a head numbers up to 2^40 writes in
/// one epoch, and a head of a later epoch numbers above every earlier one.
const EPOCH_SHIFT: u32 = 40;
/// Bytes of writes a head has on their way down its chains at most, by
/// default: past it, new writes wait for room (backpressure on their
/// clients) rather than pile up in the stream of every member after it,
/// each of which keeps a write until the rest of the chain has answered.
/// Eight batches' worth: enough to keep the streams busy.
pub const IN_FLIGHT_BYTES: usize = 8 * wimpy_schema::batch::MAX_BATCH_BYTES;
/// What one write counts for besides its key and value (its version and
/// framing), so that many small writes are bounded too.
const WRITE_OVERHEAD: usize = 64;

/// What the chain needs of a worker: its key locks, its version counter,
/// its dirty keys, its streams to the next members and the newest link
/// from each member before it.
#[derive(Debug)]
pub(crate) struct ChainState {
    locks: Vec<tokio::sync::Mutex<()>>,
    pub(crate) numbering: numbering::Numbering,
    pub(crate) pending: Arc<Pending>,
    forwarders: forwarder::Forwarders,
    /// The newest link generation from each member before this one; held
    /// while a forward is stored, so a forward of an older link waits for
    /// (and is then refused after) one of a newer link.
    upstreams: std::sync::Mutex<HashMap<WorkerId, Arc<tokio::sync::Mutex<u64>>>>,
    /// Room for writes this worker heads on their way down their chains,
    /// in bytes (see [`IN_FLIGHT_BYTES`]), and how much there is in all.
    room: (tokio::sync::Semaphore, usize),
}

impl Default for ChainState {
    fn default() -> Self {
        ChainState {
            locks: (0..KEY_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            numbering: Default::default(),
            pending: Default::default(),
            forwarders: Default::default(),
            upstreams: Default::default(),
            room: (tokio::sync::Semaphore::new(IN_FLIGHT_BYTES), IN_FLIGHT_BYTES),
        }
    }
}

impl ChainState {
    /// The same, with room for `bytes` of writes on their way.
    pub(crate) fn with_room(mut self, bytes: usize) -> ChainState {
        let bytes = bytes.clamp(1, u32::MAX as usize);
        self.room = (tokio::sync::Semaphore::new(bytes), bytes);
        self
    }

    /// Waits for room for `ops`' writes to go down their chains: held until
    /// the chains have answered for them.
    async fn room_for(&self, ops: &[Op]) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, Failure> {
        let weight: usize = ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => k.len() + v.len() + WRITE_OVERHEAD,
                Op::Delete(k) => k.len() + WRITE_OVERHEAD,
                _ => 0,
            })
            .sum();
        if weight == 0 {
            return Ok(None);
        }
        // One batch larger than all the room waits for all of it.
        let weight = weight.min(self.room.1) as u32;
        let permit = self.room.0.acquire_many(weight).await;
        permit.map(Some).map_err(|_| Failure::Unavailable("this worker is stopping".into()))
    }

    /// Who this worker is to the next members, and how it connects to
    /// them (set when it serves).
    pub(crate) fn serve_as(&self, id: WorkerId, security: &Security) {
        self.forwarders.serve_as(id, security);
    }

    /// An RPC thread that runs chain streams handed to `host`.
    pub(crate) fn host_streams(&self, host: tokio::sync::mpsc::UnboundedSender<StreamStart>) {
        self.forwarders.host(host);
    }

    /// The newest link generation from worker `from`.
    fn upstream(&self, from: WorkerId) -> Arc<tokio::sync::Mutex<u64>> {
        self.upstreams.lock().unwrap_or_else(|p| p.into_inner()).entry(from).or_default().clone()
    }

    /// Marks `writes` as on their way down the chain, those `ring` has a
    /// member after worker `me` for: before they are stored here, so a
    /// read that finds them stored finds them marked.
    fn mark<'a>(&self, ring: &Ring, me: WorkerId, writes: impl Iterator<Item = (&'a [u8], u64)>) -> Marked {
        let mut marked = Vec::new();
        for (key, version) in writes {
            let h = key_hash(key);
            if ring.chain_of_hash(h).successor(me).is_some() {
                self.pending.begin(h, key);
                marked.push((h, version));
            }
        }
        Marked { pending: self.pending.clone(), marks: marked }
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
}

/// One write as it travels down a chain.
#[derive(Debug)]
pub(crate) struct Forwarded {
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

    /// The numbered write `op` would be, without taking it.
    fn peek(op: &Op) -> Option<(&[u8], u64)> {
        match op {
            Op::PutVersioned(key, _, version) | Op::DeleteVersioned(key, version) => Some((key, *version)),
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

/// Writes marked dirty on this worker (key hash, version) until the rest
/// of the chain answers for them. Marks dropped unsettled (the call that
/// made them was cancelled: its caller hung up while it waited for the
/// store or the chain) leave their keys doubtful, to be sent down again,
/// rather than dirty for ever.
#[must_use]
pub(crate) struct Marked {
    pending: Arc<Pending>,
    marks: Vec<(u64, u64)>,
}

impl Marked {
    /// The rest of the chain holds them.
    fn taken(mut self) {
        for (h, v) in std::mem::take(&mut self.marks) {
            self.pending.end(h, v, true);
        }
    }

    /// They may be held here (and by members before this one) but not by
    /// the tail.
    fn doubt(mut self) {
        self.doubt_all();
    }

    fn doubt_all(&mut self) {
        for (h, v) in std::mem::take(&mut self.marks) {
            self.pending.end(h, v, false);
        }
    }

    /// Splits off the marks of the writes `stored` says were not stored
    /// (so are nowhere): cleared at once.
    fn keep_stored(mut self, stored: impl Fn(u64, u64) -> bool) -> Marked {
        let (kept, dropped): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.marks).into_iter().partition(|&(h, v)| stored(h, v));
        for (h, _) in dropped {
            self.pending.end(h, 0, true);
        }
        Marked { pending: self.pending.clone(), marks: kept }
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        self.doubt_all();
    }
}

/// Why writes did not go down the chain.
#[derive(Debug, Clone)]
pub(crate) enum Unsent {
    /// The next member answered with a failure.
    Refused(Failure),
    /// No answer: the link broke, or there was none to be had.
    Lost(String),
}

/// Writes queued for the next members, and their marks here.
#[must_use]
pub(crate) struct Onward {
    epoch: u64,
    answers: Vec<(WorkerId, Result<forwarder::Answer, Unsent>)>,
    marked: Marked,
}

impl Onward {
    /// Waits until every next member has answered; clears the writes'
    /// marks here, or leaves their keys doubtful if one did not take them.
    async fn answered(self) -> Result<(), Failure> {
        let mut outcome = Ok(());
        for (next, answer) in self.answers {
            let got = match answer {
                Ok(answer) => answer.await.unwrap_or_else(|_| Err(Unsent::Lost("the chain stream stopped".into()))),
                Err(unsent) => Err(unsent),
            };
            if let (Err(unsent), Ok(())) = (got, &outcome) {
                outcome = Err(match unsent {
                    // Its ring or ours is not the newest: the client refreshes
                    // and comes again, as for any ring change.
                    Unsent::Refused(Failure::StaleEpoch(theirs)) => Failure::StaleEpoch(theirs.max(self.epoch)),
                    Unsent::Refused(f) => Failure::Unavailable(format!(
                        "the chain's next member, worker {next}, refused the writes: {f:?}"
                    )),
                    Unsent::Lost(e) => Failure::Unavailable(format!(
                        "the chain's next member, worker {next}, did not take the writes: {e}"
                    )),
                });
            }
        }
        match outcome {
            Ok(()) => self.marked.taken(),
            Err(_) => self.marked.doubt(),
        }
        outcome
    }
}

/// Queues `writes` (stored here, numbered under `ring`'s epoch) for the
/// next member of each one's chain under `ring`, in order; the writes' `marked` marks are cleared once
/// they have answered. Called with the writes' keys locked (at the head)
/// or the stream from the member before held (further down), so a key's
/// writes are queued in version order.
fn pass_on(state: &WorkerState, ring: &Ring, writes: Vec<Forwarded>, marked: Marked) -> Onward {
    let epoch = ring.epoch();
    let mut by_next: BTreeMap<WorkerId, Vec<Forwarded>> = BTreeMap::new();
    for w in writes {
        if let Some(next) = ring.chain_of(&w.key).successor(state.id) {
            by_next.entry(next).or_default().push(w);
        }
    }
    let members = state.published.load();
    let answers = by_next
        .into_iter()
        .map(|(next, writes)| {
            let answer = match members.members.iter().find(|m| m.id == next) {
                Some(m) => Ok(state.chain.forwarders.queue(&m.address, epoch, writes)),
                None => Err(Unsent::Lost(format!("worker {next} is not on the ring this worker holds"))),
            };
            (next, answer)
        })
        .collect();
    Onward { epoch, answers, marked }
}

/// Carries out `ops` (gets, puts and deletes, in order) on this worker as
/// the head of their keys' chains: numbers the writes, stores them, and
/// forwards them to the next member of each key's chain; a write's answer
/// is its outcome once every copy holds it, and a get's is a value the
/// tail holds. The caller has routed every op here and holds the write
/// gate.
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
    // Before the key locks: a write waiting for room holds up no other key.
    let _room = state.chain.room_for(&ops).await?;
    let locked = state.chain.lock(ops.iter().filter(|op| !matches!(op, Op::Get(_))).map(Op::key)).await;
    let count = ops.iter().filter(|op| !matches!(op, Op::Get(_))).count() as u64;
    // Held until the store is done with them, even if this call is dropped
    // meanwhile: a copy cut below them resends them.
    let (mut version, unstored) = match count {
        0 => (0, None),
        n => {
            let (first, unstored) = state.chain.numbering.next(ring.epoch(), || store.max_version(), n);
            (first, Some(unstored))
        }
    };
    let mut numbered = Vec::with_capacity(ops.len());
    for op in ops {
        numbered.push(match op {
            Op::Put(k, v) => {
                version += 1;
                Op::PutVersioned(k, v, version - 1)
            }
            Op::Delete(k) => {
                version += 1;
                Op::DeleteVersioned(k, version - 1)
            }
            other => other,
        });
    }
    let marked = state.chain.mark(&ring, state.id, numbered.iter().filter_map(Forwarded::peek));
    let (numbered, applied) = match on_store(&store, writes, move |s| {
        let applied = apply(s, &numbered);
        drop(unstored);
        (numbered, applied)
    })
    .await
    {
        Ok(done) => done,
        Err(f) => {
            marked.doubt();
            return Err(f);
        }
    };
    // Only what the head stored goes on: a write it refused fails alone.
    let mut stored = Vec::new();
    let mut written: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    let mut answers = Vec::with_capacity(applied.len());
    let mut reread = Vec::new();
    // Gets of keys this batch wrote before them: they answer what the
    // batch wrote, once the chain holds it.
    let mut read_own = Vec::new();
    let mut stored_marks = std::collections::HashSet::new();
    for (i, (op, answer)) in numbered.iter().zip(&applied).enumerate() {
        match Forwarded::peek(op) {
            Some((k, v)) => {
                written.insert(k);
                if answer.is_ok() {
                    stored_marks.insert((key_hash(k), v));
                }
            }
            None if written.contains(op.key()) => read_own.push(i),
            // A get of a key with another's write on its way is read
            // again once the tail holds that write.
            None if !state.chain.pending.is_clean(key_hash(op.key())) => reread.push((i, op.key().to_vec())),
            None => {}
        }
    }
    let marked = marked.keep_stored(|h, v| stored_marks.contains(&(h, v)));
    for (op, answer) in numbered.into_iter().zip(applied) {
        let write = !matches!(op, Op::Get(_));
        if answer.is_ok() {
            stored.extend(Forwarded::of(op));
        }
        answers.push((answer.map_err(refusal), write));
    }
    let onward = pass_on(state, &ring, stored, marked);
    drop(locked);
    let forwarded = onward.answered().await;
    let mut answers: Vec<Result<Applied, Failure>> = answers
        .into_iter()
        .map(|(answer, write)| match answer {
            Ok(a) if write => forwarded.clone().map(|()| a),
            other => other,
        })
        .collect();
    if let Err(f) = &forwarded {
        for i in read_own {
            answers[i] = Err(f.clone());
        }
    }
    for (i, key) in reread {
        answers[i] = state.read_committed(&key, |s| s.get(&key)).await.map(Applied::Value);
    }
    Ok(answers)
}

/// How often a worker sends its doubtful keys down their chains again.
pub(crate) const REPAIR_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Sends each doubtful key's newest write here (see [`pending`]) down its
/// chain again, as the ring now has it: after a member of a chain failed
/// and the chain closed over it, the writes it did not pass on reach the
/// rest. Each goes on the stream the key's writes take (under the key's
/// lock at a head, the stream from the member before elsewhere), so it
/// cannot overtake a newer write. A key whose chain no longer has this
/// worker is forgotten; one this worker is now the tail of is the chain's
/// as it stands. Returns how many keys went down again.
pub(crate) async fn resend_doubtful(state: &Arc<WorkerState>) -> usize {
    let doubtful = state.chain.pending.doubtful();
    if doubtful.is_empty() {
        return 0;
    }
    let Ok(store) = state.store() else { return 0 };
    let ring = state.ring();
    let mut sent = Vec::new();
    for d in doubtful {
        let chain = ring.chain_of_hash(d.hash);
        if !chain.contains(state.id) || chain.successor(state.id).is_none() {
            // Given away, or this worker is now where the chain ends.
            state.chain.pending.end(d.hash, d.version, true);
            continue;
        }
        // Held so that no write of the key is stored and queued between
        // reading its value and queueing it.
        let _key_lock;
        let _stream_lock;
        match chain.predecessor(state.id) {
            None => _key_lock = state.chain.lock([&d.key[..]]).await,
            Some(before) => _stream_lock = state.chain.upstream(before).lock_owned().await,
        }
        let write = match store.get_versioned(&d.key) {
            Ok(Some((value, version))) => Forwarded { key: d.key, version, value: Some(value) },
            Ok(None) => Forwarded { key: d.key, version: d.version, value: None },
            Err(e) => {
                tracing::warn!(error = %e, "reading a doubtful key to send it down its chain again");
                continue;
            }
        };
        // The doubtful mark goes once this write is taken.
        state.chain.pending.begin(d.hash, &write.key);
        let marked = Marked { pending: state.chain.pending.clone(), marks: vec![(d.hash, write.version)] };
        sent.push(pass_on(state, &ring, vec![write], marked));
    }
    let n = sent.len();
    for onward in sent {
        // A failure leaves the key doubtful, for the next round.
        let _ = onward.answered().await;
    }
    n
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
