//! The stream of writes from this worker to one next member of its chains.
//!
//! Every write this worker passes to a given member goes through one
//! queue, in the order it was queued, and from there onto one link: a
//! member's writes of a key are queued under the key's lock, so they reach
//! the next member in version order. The stream is a task on one of the
//! worker's RPC threads, which owns the link (capnp clients stay on one
//! thread); it sends what has queued up while it was busy as one message, without waiting for earlier ones to be
//! answered; each is numbered on the link (`seq`) so the next member stores
//! them in order.
//!
//! A message is answered once the rest of the chain holds its writes, and
//! a chain's rest may run through this worker again (chains of other
//! ranges go the other way round the ring): so no message waits for an
//! older one to be answered, nor for room among those unanswered, or two
//! streams could wait on each other for ever.
//!
//! A link that breaks (the next member restarted, or stopped answering for
//! a [`CALL`]) is made anew once, with a higher generation, and every
//! unanswered message sent again from the first, in order: a member given
//! a write twice, in order, holds what it held after the first time, and it
//! refuses whatever still arrives on the old link.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::channel::oneshot;
use tokio::sync::mpsc;
use wimpy_net::deadline::{CALL, within};
use wimpy_net::{Role, Security};
use wimpy_schema::wimpy_capnp::{chain_link, chain_result, worker};
use wimpy_schema::{Failure, WorkerId};

use super::{Forwarded, Unsent};

/// Largest piece of a value in one forwarded write: a stream's chunk.
const PIECE_BYTES: usize = wimpy_schema::wimpy_capnp::MAX_CHUNK as usize;
/// Value bytes per forwarded message: a batch's worth, well under the
/// 8 MiB reader limit.
const MESSAGE_BYTES: usize = wimpy_schema::batch::MAX_BATCH_BYTES;
/// Writes per forwarded message.
const MESSAGE_WRITES: usize = 4096;

/// What one queued batch of writes comes back as.
pub(crate) type Answer = oneshot::Receiver<Result<(), Unsent>>;

/// The streams of one worker, one per next member's address, each run by
/// one of the worker's RPC threads (picked by the address), so that a
/// write queued on that thread wakes no other.
#[derive(Debug, Default)]
pub(crate) struct Forwarders {
    /// This worker's id and how it connects, once it serves.
    from: std::sync::OnceLock<(WorkerId, Security)>,
    /// The RPC threads that run streams.
    hosts: std::sync::Mutex<Vec<mpsc::UnboundedSender<StreamStart>>>,
    streams: std::sync::Mutex<HashMap<String, mpsc::UnboundedSender<Item>>>,
}

/// Writes queued for one next member, and who waits for its answer.
struct Item {
    epoch: u64,
    writes: Vec<Forwarded>,
    done: oneshot::Sender<Result<(), Unsent>>,
}

/// A stream for an RPC thread to run ([`StreamStart::run`]).
pub(crate) struct StreamStart {
    address: String,
    from: WorkerId,
    security: Security,
    queue: mpsc::UnboundedReceiver<Item>,
}

impl StreamStart {
    /// Runs the stream on this thread's `LocalSet` until the worker stops
    /// queueing for it.
    pub(crate) async fn run(self) {
        Stream::new(self.address, self.from, self.security).run(self.queue).await
    }
}

impl Forwarders {
    /// Who this worker is to the next members, and how it reaches them.
    pub(crate) fn serve_as(&self, id: WorkerId, security: &Security) {
        let _ = self.from.set((id, security.clone()));
    }

    /// An RPC thread that runs the streams handed to `host`.
    pub(crate) fn host(&self, host: mpsc::UnboundedSender<StreamStart>) {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).push(host);
    }

    /// Queues `writes` (numbered under `epoch`) for the member at
    /// `address`; the answer comes once that member and the rest of the
    /// chain after it hold them. Writes queued one after another reach the
    /// member in that order.
    pub(crate) fn queue(&self, address: &str, epoch: u64, writes: Vec<Forwarded>) -> Answer {
        let (done, answer) = oneshot::channel();
        let mut item = Item { epoch, writes, done };
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stream) = streams.get(address) {
            match stream.send(item) {
                Ok(()) => return answer,
                // Its thread stopped: a new one.
                Err(mpsc::error::SendError(back)) => item = back,
            }
        }
        let Some((from, security)) = self.from.get() else {
            let _ = item.done.send(Err(Unsent::Lost("this worker is not serving".into())));
            return answer;
        };
        let (tx, queue) = mpsc::unbounded_channel();
        let start = StreamStart { address: address.to_string(), from: *from, security: security.clone(), queue };
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let host = hosts.get(wimpy_schema::key_hash(address.as_bytes()) as usize % hosts.len().max(1));
        if host.is_none_or(|h| h.send(start).is_err()) {
            let _ = item.done.send(Err(Unsent::Lost("this worker has stopped serving".into())));
            return answer;
        }
        let _ = tx.send(item);
        streams.insert(address.to_string(), tx);
        answer
    }
}

/// Generations of the links this process makes: above those of any
/// earlier run of it (they start from the clock), and rising.
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let _ = NEXT.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    NEXT.fetch_add(1, Ordering::AcqRel)
}

/// A piece of one write: the whole of a small value, or part of a large
/// one.
struct Piece {
    write: Rc<Forwarded>,
    offset: usize,
    len: usize,
}

/// One queued batch on its way: answered once every message carrying a
/// piece of it is.
struct Batch {
    /// Messages carrying its pieces not yet answered.
    unanswered: usize,
    /// Why one of them failed, if one did.
    failed: Option<Unsent>,
    done: Option<oneshot::Sender<Result<(), Unsent>>>,
}

impl Batch {
    /// One of its messages has been answered with `outcome`.
    fn answered(&mut self, outcome: &Result<(), Unsent>) {
        self.unanswered -= 1;
        if let (Err(e), None) = (outcome, &self.failed) {
            self.failed = Some(e.clone());
        }
        if self.unanswered == 0
            && let Some(done) = self.done.take()
        {
            let _ = done.send(self.failed.take().map_or(Ok(()), Err));
        }
    }

    /// Answers a batch with no writes at once.
    fn answered_empty(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(Ok(()));
        }
    }

    /// Fails it now, whatever is still unanswered.
    fn fail(&mut self, why: Unsent) {
        if let Some(done) = self.done.take() {
            let _ = done.send(Err(why));
        }
    }
}

/// One forward call's worth of pieces.
struct Message {
    epoch: u64,
    pieces: Vec<Piece>,
    bytes: usize,
    /// The batches it carries pieces of.
    batches: Vec<Rc<RefCell<Batch>>>,
    /// Sent again on a new link already.
    resent: bool,
}

/// The link a stream sends on.
struct Link {
    client: chain_link::Client,
    generation: u64,
    next_seq: u64,
}

/// A message's answer as its sender task reports it: the link generation
/// it was sent on, its id, its outcome.
type Reported = (u64, u64, Result<(), Unsent>);

struct Stream {
    address: String,
    from: WorkerId,
    security: Security,
    link: Option<Link>,
    /// Sent and not answered, by id (the order they were first sent in).
    unanswered: BTreeMap<u64, Message>,
    next_id: u64,
    /// An item of another epoch than the message being filled.
    held: Option<Item>,
    reports: (mpsc::UnboundedSender<Reported>, mpsc::UnboundedReceiver<Reported>),
}

impl Stream {
    fn new(address: String, from: WorkerId, security: Security) -> Stream {
        Stream {
            address,
            from,
            security,
            link: None,
            unanswered: BTreeMap::new(),
            next_id: 0,
            held: None,
            reports: mpsc::unbounded_channel(),
        }
    }

    /// Runs until every queue handle is gone.
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Item>) {
        loop {
            tokio::select! {
                biased;
                Some((generation, id, outcome)) = self.reports.1.recv() => self.answered(generation, id, outcome).await,
                item = next_item(&mut self.held, &mut queue) => match item {
                    Some(first) => {
                        // Every task that was ready to run has its turn
                        // first: what they queue goes in the same message.
                        tokio::task::yield_now().await;
                        let items = self.gather(first, &mut queue);
                        self.send_items(items).await;
                    }
                    None => return,
                },
            }
        }
    }

    /// `first` and what else has queued of its epoch, up to one message's
    /// worth.
    fn gather(&mut self, first: Item, queue: &mut mpsc::UnboundedReceiver<Item>) -> Vec<Item> {
        let epoch = first.epoch;
        let size = |i: &Item| i.writes.iter().map(|w| w.value.as_ref().map_or(0, Vec::len)).sum::<usize>();
        let (mut bytes, mut writes) = (size(&first), first.writes.len());
        let mut items = vec![first];
        while bytes < MESSAGE_BYTES && writes < MESSAGE_WRITES {
            match queue.try_recv() {
                Ok(item) if item.epoch == epoch => {
                    bytes += size(&item);
                    writes += item.writes.len();
                    items.push(item);
                }
                Ok(other) => {
                    self.held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        items
    }

    /// Packs `items` into messages and sends them.
    async fn send_items(&mut self, items: Vec<Item>) {
        let epoch = items[0].epoch;
        let mut messages: Vec<Message> = Vec::new();
        let mut current = Message::new(epoch);
        for item in items {
            let batch = Rc::new(RefCell::new(Batch { unanswered: 0, failed: None, done: Some(item.done) }));
            for w in item.writes {
                let w = Rc::new(w);
                // A delete or an empty value is one piece of no bytes.
                let total = w.value.as_ref().map_or(0, Vec::len);
                let mut offset = 0;
                loop {
                    let len = PIECE_BYTES.min(total - offset);
                    let full = current.bytes + len > MESSAGE_BYTES || current.pieces.len() >= MESSAGE_WRITES;
                    if full && !current.pieces.is_empty() {
                        messages.push(std::mem::replace(&mut current, Message::new(epoch)));
                    }
                    current.carries(&batch);
                    current.bytes += len;
                    current.pieces.push(Piece { write: w.clone(), offset, len });
                    offset += len;
                    if offset >= total {
                        break;
                    }
                }
            }
            if batch.borrow().unanswered == 0 {
                // No writes: nothing to wait for.
                batch.borrow_mut().answered_empty();
            }
        }
        messages.push(current);
        for m in messages {
            if m.pieces.is_empty() {
                continue;
            }
            if self.link.is_none() && !self.relink().await {
                for b in &m.batches {
                    b.borrow_mut().fail(Unsent::Lost("no link to the next member could be made".into()));
                }
                continue;
            }
            self.next_id += 1;
            self.send(self.next_id, &m);
            self.unanswered.insert(self.next_id, m);
        }
    }

    /// Sends `m`, numbered `id`, on the current link; its answer comes
    /// back through `reports`.
    fn send(&mut self, id: u64, m: &Message) {
        let Some(link) = self.link.as_mut() else { return };
        let mut req = link.client.forward_request();
        req.get().set_epoch(m.epoch);
        req.get().set_seq(link.next_seq);
        link.next_seq += 1;
        let mut list = req.get().init_writes(m.pieces.len() as u32);
        for (j, p) in m.pieces.iter().enumerate() {
            let mut b = list.reborrow().get(j as u32);
            b.set_key(&p.write.key);
            b.set_version(p.write.version);
            match &p.write.value {
                None => b.set_delete(()),
                Some(v) => {
                    let mut put = b.init_put();
                    put.set_offset(p.offset as u64);
                    put.set_total(v.len() as u64);
                    put.set_bytes(&v[p.offset..p.offset + p.len]);
                }
            }
        }
        let promise = req.send().promise;
        let (generation, reports) = (link.generation, self.reports.0.clone());
        tokio::task::spawn_local(async move {
            let lost = |e: capnp::Error| Unsent::Lost(e.to_string());
            let outcome = async {
                let answer = within(CALL, "ChainLink.forward", promise).await.map_err(lost)?;
                let result = answer.get().map_err(lost)?.get_result().map_err(lost)?;
                match result.which().map_err(|e| Unsent::Lost(e.to_string()))? {
                    chain_result::Ok(()) => Ok(()),
                    chain_result::Failure(f) => Err(Unsent::Refused(Failure::read(f.map_err(lost)?).map_err(lost)?)),
                }
            }
            .await;
            let _ = reports.send((generation, id, outcome));
        });
    }

    /// Takes in the answer to message `id`, sent on link `generation`.
    async fn answered(&mut self, generation: u64, id: u64, outcome: Result<(), Unsent>) {
        if self.link.as_ref().map(|l| l.generation) != Some(generation) {
            // Sent on a link given up since: sent again, or failed.
            return;
        }
        if let Err(Unsent::Lost(e)) = &outcome {
            tracing::warn!(to = %self.address, error = %e, "a chain link broke");
            self.link = None;
            let e = e.clone();
            if self.unanswered.values().any(|m| m.resent) || !self.relink().await {
                return self.fail_all(|| Unsent::Lost(e.clone()));
            }
            // Everything unanswered again, in the order first sent.
            let ids: Vec<u64> = self.unanswered.keys().copied().collect();
            for id in ids {
                if let Some(mut m) = self.unanswered.remove(&id) {
                    m.resent = true;
                    self.send(id, &m);
                    self.unanswered.insert(id, m);
                }
            }
            return;
        }
        if let Some(m) = self.unanswered.remove(&id) {
            for b in &m.batches {
                b.borrow_mut().answered(&outcome);
            }
        }
    }

    /// Fails every unanswered message's batches.
    fn fail_all(&mut self, why: impl Fn() -> Unsent) {
        self.link = None;
        for (_, m) in std::mem::take(&mut self.unanswered) {
            for b in &m.batches {
                b.borrow_mut().fail(why());
            }
        }
    }

    /// Makes a new link to the next member; false if none could be made.
    async fn relink(&mut self) -> bool {
        let generation = next_generation();
        match link_to(&self.address, &self.security, self.from, generation).await {
            Ok(client) => {
                self.link = Some(Link { client, generation, next_seq: 0 });
                true
            }
            Err(e) => {
                tracing::warn!(to = %self.address, error = %e, "making a chain link");
                false
            }
        }
    }
}

impl Message {
    fn new(epoch: u64) -> Message {
        Message { epoch, pieces: Vec::new(), bytes: 0, batches: Vec::new(), resent: false }
    }

    /// Notes that a piece of `batch` goes in this message.
    fn carries(&mut self, batch: &Rc<RefCell<Batch>>) {
        if !self.batches.last().is_some_and(|b| Rc::ptr_eq(b, batch)) {
            batch.borrow_mut().unanswered += 1;
            self.batches.push(batch.clone());
        }
    }
}

/// The held item, or the next one queued.
async fn next_item(held: &mut Option<Item>, queue: &mut mpsc::UnboundedReceiver<Item>) -> Option<Item> {
    match held.take() {
        Some(item) => Some(item),
        None => queue.recv().await,
    }
}

/// A new link to the worker at `address`, connecting as a worker.
async fn link_to(
    address: &str,
    security: &Security,
    from: WorkerId,
    generation: u64,
) -> Result<chain_link::Client, String> {
    let w: worker::Client =
        wimpy_net::connect(address, security, &[Role::Worker]).await.map_err(|e| format!("connecting: {e}"))?;
    let mut req = w.chain_request();
    req.get().set_from(from);
    req.get().set_generation(generation);
    let answer = within(CALL, "Worker.chain", req.send().promise).await.map_err(|e| e.to_string())?;
    let answer = answer.get().map_err(|e| e.to_string())?;
    if answer.has_refused() {
        let f = Failure::read(answer.get_refused().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        return Err(format!("{f:?}"));
    }
    answer.get_link().map_err(|e| e.to_string())
}
