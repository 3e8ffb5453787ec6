//! The receiving end of a chain stream: where the member before this one
//! forwards writes. `Worker.chain` hands one to worker certificates alone,
//! bound to the caller's id and the link's generation.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::Notify;
use wimpy_schema::wimpy_capnp::{chain_link, chain_write};
use wimpy_schema::{Failure, WorkerId};
use wimpy_store::Op;

use super::super::{WorkerState, on_store, refusal};
use super::{Forwarded, apply};

/// One link from the member before this one.
pub(crate) struct ChainLinkService {
    state: Arc<WorkerState>,
    from: WorkerId,
    generation: u64,
    /// The write whose value's pieces are arriving, with the bytes so far.
    partial: RefCell<Option<Forwarded>>,
    /// The `seq` of the forward whose turn it is to be stored.
    turn: Cell<u64>,
    turned: Notify,
}

impl ChainLinkService {
    pub(crate) fn new(state: Arc<WorkerState>, from: WorkerId, generation: u64) -> ChainLinkService {
        ChainLinkService {
            state,
            from,
            generation,
            partial: RefCell::new(None),
            turn: Cell::new(0),
            turned: Notify::new(),
        }
    }

    /// Waits until forward `seq` is next to be stored.
    async fn my_turn(&self, seq: u64) {
        loop {
            let turned = self.turned.notified();
            if self.turn.get() >= seq {
                return;
            }
            turned.await;
        }
    }

    /// The whole writes `list` completes, in order; values over
    /// `max_value` bytes are refused.
    fn assemble(
        &self,
        list: capnp::struct_list::Reader<'_, chain_write::Owned>,
        max_value: usize,
    ) -> Result<Vec<Forwarded>, Failure> {
        let bad = |e: capnp::Error| Failure::Invalid(format!("a forwarded write: {e}"));
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

    /// Stores the writes of one forward and queues them for the next
    /// member; the future returned ends when the rest of the chain has
    /// answered. Runs in `seq` order, holding the stream from the member
    /// before this one, so that a link it gave up cannot store anything
    /// once a newer one has.
    async fn store_and_pass(
        &self,
        epoch: u64,
        list: capnp::struct_list::Reader<'_, chain_write::Owned>,
    ) -> Result<super::Onward, Failure> {
        let upstream = self.state.chain.upstream(self.from);
        let mut newest = upstream.lock().await;
        if self.generation < *newest {
            return Err(Failure::Unavailable(format!(
                "worker {} made a newer chain link to this worker; this one is given up",
                self.from
            )));
        }
        *newest = self.generation;
        let ring = self.state.ring();
        if epoch != ring.epoch() {
            return Err(Failure::StaleEpoch(ring.epoch()));
        }
        let store = self.state.store()?;
        let writes = self.assemble(list, store.options().max_value_bytes)?;
        for w in &writes {
            let chain = ring.chain_of(&w.key);
            if !chain.contains(self.state.id) || chain.head() == Some(self.state.id) {
                return Err(Failure::StaleEpoch(ring.epoch()));
            }
        }
        let marked = self.state.chain.mark(&ring, self.state.id, writes.iter().map(|w| (&w.key[..], w.version)));
        let ops: Vec<Op> = writes.into_iter().map(Forwarded::into_op).collect();
        let stored = on_store(&store, true, move |s| {
            let applied = apply(s, &ops);
            (ops, applied)
        })
        .await;
        let (ops, applied) = match stored {
            Ok(stored) => stored,
            Err(f) => {
                marked.doubt();
                return Err(f);
            }
        };
        if let Some(Err(e)) = applied.into_iter().find(|a| a.is_err()) {
            marked.doubt();
            return Err(refusal(e));
        }
        let writes = ops.into_iter().filter_map(Forwarded::of).collect();
        Ok(super::pass_on(&self.state, &ring, writes, marked))
    }
}

impl chain_link::Server for ChainLinkService {
    async fn forward(
        self: Rc<Self>,
        params: chain_link::ForwardParams,
        mut results: chain_link::ForwardResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let seq = p.get_seq();
        self.my_turn(seq).await;
        let passed = match p.get_writes() {
            Ok(list) => self.store_and_pass(p.get_epoch(), list).await,
            Err(e) => Err(Failure::Invalid(format!("a forward's writes: {e}"))),
        };
        // The next forward's turn, whatever became of this one.
        self.turn.set(seq + 1);
        self.turned.notify_waiters();
        let outcome = match passed {
            Ok(onward) => onward.answered().await,
            Err(f) => Err(f),
        };
        let mut r = results.get().init_result();
        match outcome {
            Ok(()) => r.set_ok(()),
            Err(f) => f.write(r.init_failure()),
        }
        Ok(())
    }
}
