//! Coalescing concurrent key requests into `Worker.batch` calls.
//!
//! A Cap'n Proto call costs far more CPU, on both ends, than a store lookup
//! does. When many tasks of one thread have requests in flight to the same
//! worker (the clients of an application, or the master's proxy serving many
//! connections), a [`Batcher`] queues them and sends each queue as one
//! `batch` message once every task that was ready to run has had its turn.
//! A lone request waits for one scheduler pass and no timer; under load,
//! batches grow by themselves to as many requests as arrive while the
//! previous ones travel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;

use futures::channel::oneshot;

use wimpy_schema::batch::{KeyAnswer, KeyRequest, MAX_BATCH_BYTES, MAX_BATCH_OPS};

use crate::KeyPeer;

/// Who waits for queued requests.
enum Waiter {
    /// One request's answer.
    One(oneshot::Sender<capnp::Result<KeyAnswer>>),
    /// This many consecutive requests, handed back with their answers or
    /// with the batch's error.
    Many(usize, oneshot::Sender<Answered>),
}

/// Requests handed back to a [`Batcher::call_many`] caller, with the
/// peer's answers (in their order) or the error of the batch that carried
/// them.
pub type Answered = (Vec<KeyRequest>, capnp::Result<Vec<KeyAnswer>>);

/// Requests for one destination, not yet sent.
struct Queue<P> {
    /// Tells a scheduled flush whether the queue it was scheduled for is
    /// still the one waiting (a full queue goes out early).
    generation: u64,
    epoch: u64,
    peer: P,
    requests: Vec<KeyRequest>,
    waiters: Vec<Waiter>,
    bytes: usize,
}

/// Queues of requests per destination `D` (a worker id, an address), each
/// sent to its peer `P` as one batch. Lives on one thread, inside a
/// `LocalSet`.
pub struct Batcher<D, P> {
    queues: RefCell<HashMap<D, Queue<P>>>,
    /// Queues started so far: each goes out as one batch.
    generations: Cell<u64>,
    requests: Cell<u64>,
}

/// How many batches a [`Batcher`] sent, carrying how many requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub batches: u64,
    pub requests: u64,
}

impl std::ops::Sub for BatchStats {
    type Output = BatchStats;
    fn sub(self, earlier: BatchStats) -> BatchStats {
        BatchStats { batches: self.batches - earlier.batches, requests: self.requests - earlier.requests }
    }
}

impl std::ops::Add for BatchStats {
    type Output = BatchStats;
    fn add(self, other: BatchStats) -> BatchStats {
        BatchStats { batches: self.batches + other.batches, requests: self.requests + other.requests }
    }
}

impl<D, P> std::fmt::Debug for Batcher<D, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("queues", &self.queues.borrow().len()).finish()
    }
}

impl<D: Hash + Eq + Clone + 'static, P: KeyPeer> Batcher<D, P> {
    pub fn new() -> Rc<Batcher<D, P>> {
        Rc::new(Batcher { queues: RefCell::new(HashMap::new()), generations: Cell::new(0), requests: Cell::new(0) })
    }

    /// Batches and requests queued so far (a batch counts once started).
    pub fn stats(&self) -> BatchStats {
        BatchStats { batches: self.generations.get(), requests: self.requests.get() }
    }

    /// Sends `request` to `peer` (known as `dest`, routed by `epoch`) in
    /// the next batch for it, and returns the peer's answer to it. A
    /// transport failure of the batch is every request's error.
    pub async fn call(self: &Rc<Self>, dest: D, peer: &P, epoch: u64, request: KeyRequest) -> capnp::Result<KeyAnswer> {
        let (tx, rx) = oneshot::channel();
        let size = request.bytes();
        self.enqueue(dest, peer, epoch, std::iter::once(request), 1, size, Waiter::One(tx));
        rx.await.unwrap_or_else(|_| Err(unsent()))
    }

    /// Sends many requests to one peer in its next batch (or batches, when
    /// they would overflow one), with one waiter for all of them rather than
    /// one each. The requests come back, in their order, with the answers.
    pub async fn call_many(self: &Rc<Self>, dest: D, peer: &P, epoch: u64, requests: Vec<KeyRequest>) -> Answered {
        let mut parts = Vec::new();
        let mut rest = requests;
        while !rest.is_empty() {
            // The longest run that fits beside what is queued already, or
            // else in an empty batch (at least one request).
            let (mut take, mut bytes) = fitting(&rest, self.room(&dest, epoch));
            if take == 0 {
                // Over the limits by itself, a request goes alone (and is
                // refused whole by the peer).
                take = fitting(&rest, (MAX_BATCH_OPS, MAX_BATCH_BYTES)).0.max(1);
                bytes = rest[..take].iter().map(KeyRequest::bytes).sum();
            }
            let tail = rest.split_off(take);
            let (tx, rx) = oneshot::channel();
            self.enqueue(dest.clone(), peer, epoch, rest.into_iter(), take, bytes, Waiter::Many(take, tx));
            parts.push(rx);
            rest = tail;
        }
        let mut requests = Vec::new();
        let mut answers = Ok(Vec::new());
        for part in parts {
            let (sent, answered) = part.await.unwrap_or_else(|_| (Vec::new(), Err(unsent())));
            requests.extend(sent);
            match (&mut answers, answered) {
                (Ok(all), Ok(some)) => all.extend(some),
                (Ok(_), Err(e)) => answers = Err(e),
                (Err(_), _) => {}
            }
        }
        (requests, answers)
    }

    /// Requests and bytes the queue of `dest` still takes at `epoch`.
    fn room(&self, dest: &D, epoch: u64) -> (usize, usize) {
        match self.queues.borrow().get(dest) {
            Some(q) if q.epoch == epoch => {
                (MAX_BATCH_OPS.saturating_sub(q.requests.len()), MAX_BATCH_BYTES.saturating_sub(q.bytes))
            }
            _ => (MAX_BATCH_OPS, MAX_BATCH_BYTES),
        }
    }

    /// Adds `count` requests (of `size` bytes in all) for one waiter to the
    /// queue of `dest`.
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        self: &Rc<Self>,
        dest: D,
        peer: &P,
        epoch: u64,
        requests: impl Iterator<Item = KeyRequest>,
        count: usize,
        size: usize,
        waiter: Waiter,
    ) {
        let mut queues = self.queues.borrow_mut();
        // A queue routed by another epoch, or one these requests would
        // overflow, goes out now; the requests start the next one.
        if let Some(q) = queues.get(&dest)
            && (q.epoch != epoch || q.requests.len() + count > MAX_BATCH_OPS || q.bytes + size > MAX_BATCH_BYTES)
        {
            let full = queues.remove(&dest).expect("just seen");
            tokio::task::spawn_local(send(full));
        }
        let queue = queues.entry(dest.clone()).or_insert_with(|| {
            let generation = self.generations.get() + 1;
            self.generations.set(generation);
            tokio::task::spawn_local(self.clone().flush_later(dest, generation));
            Queue { generation, epoch, peer: peer.clone(), requests: Vec::new(), waiters: Vec::new(), bytes: 0 }
        });
        queue.bytes += size;
        self.requests.set(self.requests.get() + count as u64);
        queue.requests.extend(requests);
        queue.waiters.push(waiter);
    }

    /// Sends the queue of `dest` once every task ready now has run (and so
    /// had the chance to add to it), unless it already went out.
    async fn flush_later(self: Rc<Self>, dest: D, generation: u64) {
        tokio::task::yield_now().await;
        let queue = {
            let mut queues = self.queues.borrow_mut();
            match queues.get(&dest) {
                Some(q) if q.generation == generation => queues.remove(&dest),
                _ => None,
            }
        };
        if let Some(q) = queue {
            send(q).await;
        }
    }
}

/// Sends one queue as a batch and hands each waiter its answer.
async fn send<P: KeyPeer>(q: Queue<P>) {
    let mut answers = q.peer.send_batch(q.epoch, &q.requests).await.map(Vec::into_iter);
    // The next `n` answers, or the batch's error for each waiter.
    let mut next = |n: usize| match &mut answers {
        Ok(answers) => Ok(answers.by_ref().take(n).collect::<Vec<_>>()),
        Err(e) => Err(e.clone()),
    };
    let mut requests = q.requests.into_iter();
    for waiter in q.waiters {
        match waiter {
            Waiter::One(tx) => {
                requests.next();
                // read_answers checked that there is one answer per request.
                // A waiter that is gone gave up on its request: nobody to tell.
                let _ = tx.send(next(1).map(|mut one| one.pop().expect("one answer per request")));
            }
            Waiter::Many(n, tx) => {
                // As above: a waiter that is gone gave up.
                let _ = tx.send((requests.by_ref().take(n).collect(), next(n)));
            }
        }
    }
}

/// How many of `requests`, from the first, fit in `(ops, bytes)`, and
/// their bytes.
fn fitting(requests: &[KeyRequest], (ops, bytes): (usize, usize)) -> (usize, usize) {
    let (mut take, mut used) = (0, 0);
    for r in requests {
        if take == ops || used + r.bytes() > bytes {
            break;
        }
        take += 1;
        used += r.bytes();
    }
    (take, used)
}

fn unsent() -> capnp::Error {
    capnp::Error::disconnected("the batch was dropped unsent".into())
}
