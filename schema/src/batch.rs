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

use crate::Failure;
use crate::wimpy_capnp::{key_op_result, worker};

/// Most operations in one `Worker.batch` (the schema's `maxBatchOps`).
pub const MAX_BATCH_OPS: usize = crate::wimpy_capnp::MAX_BATCH_OPS as usize;

/// Most bytes of keys and values in one batch message, each way (the
/// schema's `maxBatchBytes`).
pub const MAX_BATCH_BYTES: usize = crate::wimpy_capnp::MAX_BATCH_BYTES as usize;

/// The `what` of the `tooLarge` failure a worker answers for a get whose
/// value did not fit in the batch's answer: fetch that key on its own.
pub const BATCH_ANSWER_FULL: &str = "batch answer";

/// One key operation, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRequest {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl KeyRequest {
    fn key(&self) -> &[u8] {
        match self {
            KeyRequest::Get(k) | KeyRequest::Put(k, _) | KeyRequest::Delete(k) => k,
        }
    }

    /// Bytes of key and value this request adds to a batch.
    pub fn bytes(&self) -> usize {
        match self {
            KeyRequest::Put(k, v) => k.len() + v.len(),
            other => other.key().len(),
        }
    }
}

/// What the worker answered for one [`KeyRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    /// A get found this value.
    Value(Vec<u8>),
    /// A get found no such key.
    NotFound,
    /// A put is durable per the worker's sync mode.
    Stored,
    /// A delete ran; whether the key was there.
    Deleted(bool),
    /// The worker refused or failed this operation.
    Failed(Failure),
}

type Waiter = oneshot::Sender<capnp::Result<KeyAnswer>>;

/// Requests for one destination, not yet sent.
struct Queue {
    /// Tells a scheduled flush whether the queue it was scheduled for is
    /// still the one waiting (a full queue goes out early).
    generation: u64,
    epoch: u64,
    worker: worker::Client,
    requests: Vec<KeyRequest>,
    waiters: Vec<Waiter>,
    bytes: usize,
}

/// Queues of requests per destination `D` (a worker id, an address), each
/// sent as one `Worker.batch`. Lives on one thread, inside a `LocalSet`.
pub struct Batcher<D> {
    queues: RefCell<HashMap<D, Queue>>,
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

impl<D> std::fmt::Debug for Batcher<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("queues", &self.queues.borrow().len()).finish()
    }
}

impl<D: Hash + Eq + Clone + 'static> Batcher<D> {
    pub fn new() -> Rc<Batcher<D>> {
        Rc::new(Batcher { queues: RefCell::new(HashMap::new()), generations: Cell::new(0), requests: Cell::new(0) })
    }

    /// Batches and requests queued so far (a batch counts once started).
    pub fn stats(&self) -> BatchStats {
        BatchStats { batches: self.generations.get(), requests: self.requests.get() }
    }

    /// Sends `request` to `worker` (known as `dest`, routed by `epoch`) in
    /// the next batch for it, and returns the worker's answer to it. A
    /// transport failure of the batch is every request's error.
    pub async fn call(
        self: &Rc<Self>,
        dest: D,
        worker: &worker::Client,
        epoch: u64,
        request: KeyRequest,
    ) -> capnp::Result<KeyAnswer> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(dest, worker, epoch, request, tx);
        rx.await.unwrap_or_else(|_| Err(capnp::Error::disconnected("the batch was dropped unsent".into())))
    }

    fn enqueue(self: &Rc<Self>, dest: D, worker: &worker::Client, epoch: u64, request: KeyRequest, waiter: Waiter) {
        let size = request.bytes();
        let mut queues = self.queues.borrow_mut();
        // A queue routed by another epoch, or one this request would
        // overflow, goes out now; the request starts the next one.
        if let Some(q) = queues.get(&dest)
            && (q.epoch != epoch || q.requests.len() >= MAX_BATCH_OPS || q.bytes + size > MAX_BATCH_BYTES)
        {
            let full = queues.remove(&dest).expect("just seen");
            tokio::task::spawn_local(send(full));
        }
        let queue = queues.entry(dest.clone()).or_insert_with(|| {
            let generation = self.generations.get() + 1;
            self.generations.set(generation);
            tokio::task::spawn_local(self.clone().flush_later(dest, generation));
            Queue { generation, epoch, worker: worker.clone(), requests: Vec::new(), waiters: Vec::new(), bytes: 0 }
        });
        queue.bytes += size;
        self.requests.set(self.requests.get() + 1);
        queue.requests.push(request);
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
async fn send(q: Queue) {
    let Queue { epoch, worker, requests, waiters, .. } = q;
    let mut req = worker.batch_request();
    {
        let mut params = req.get();
        params.set_epoch(epoch);
        let mut ops = params.init_ops(requests.len() as u32);
        for (i, r) in requests.iter().enumerate() {
            let mut op = ops.reborrow().get(i as u32);
            op.set_key(r.key());
            match r {
                KeyRequest::Get(_) => op.set_get(()),
                KeyRequest::Put(_, v) => op.set_put(v),
                KeyRequest::Delete(_) => op.set_delete(()),
            }
        }
    }
    drop(requests);
    let answers = req.send().promise.await.and_then(|resp| {
        let results = resp.get()?.get_results()?;
        if results.len() as usize != waiters.len() {
            return Err(capnp::Error::failed(format!(
                "a batch of {} operations was answered with {} results",
                waiters.len(),
                results.len()
            )));
        }
        results.iter().map(read_answer).collect::<capnp::Result<Vec<_>>>()
    });
    match answers {
        Ok(answers) => {
            for (waiter, answer) in waiters.into_iter().zip(answers) {
                let _ = waiter.send(Ok(answer));
            }
        }
        Err(e) => {
            for waiter in waiters {
                let _ = waiter.send(Err(e.clone()));
            }
        }
    }
}

fn read_answer(r: key_op_result::Reader<'_>) -> capnp::Result<KeyAnswer> {
    Ok(match r.which()? {
        key_op_result::Value(v) => KeyAnswer::Value(v?.to_vec()),
        key_op_result::NotFound(()) => KeyAnswer::NotFound,
        key_op_result::Stored(()) => KeyAnswer::Stored,
        key_op_result::Deleted(was) => KeyAnswer::Deleted(was),
        key_op_result::Failure(f) => KeyAnswer::Failed(Failure::read(f?)?),
    })
}
