//! `Worker.batch`: many gets, puts and deletes in one message. A client with
//! many requests in flight to this worker pays the RPC overhead once per
//! batch, and the batch's writes share one wait for durability.

use std::sync::Arc;

use wimpy_schema::Failure;
use wimpy_schema::batch::{BATCH_ANSWER_FULL, MAX_BATCH_BYTES, MAX_BATCH_OPS};
use wimpy_schema::wimpy_capnp::{key_op, key_op_result, worker};

use super::{MAX_INLINE_VALUE, WorkerState, on_store, refusal};
use crate::store::{Applied, Op};

pub(super) async fn batch(
    state: &Arc<WorkerState>,
    params: worker::BatchParams,
    mut results: worker::BatchResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let epoch = p.get_epoch();
    let ops = p.get_ops()?;
    let n = ops.len();

    if n as usize > MAX_BATCH_OPS {
        let refusal = Failure::Invalid(format!("a batch of {n} operations; at most {MAX_BATCH_OPS} are allowed"));
        refuse_all(results.get().init_results(n), &refusal);
        return Ok(());
    }

    // Each operation is routed on its own; those this worker serves go to
    // the store together, in order.
    let mut refused: Vec<Option<Failure>> = Vec::with_capacity(n as usize);
    let mut routed: Vec<Op> = Vec::with_capacity(n as usize);
    let mut writes = false;
    let mut bytes = 0usize;
    for op in ops.iter() {
        let key = op.get_key()?;
        bytes += key.len();
        let parsed = match op.which()? {
            key_op::Get(()) => state.route(key, epoch).map(|()| Op::Get(key.to_vec())),
            key_op::Put(value) => {
                let value = value?;
                bytes += value.len();
                writes = true;
                state.route_write(key, epoch).map(|()| Op::Put(key.to_vec(), value.to_vec()))
            }
            key_op::Delete(()) => {
                writes = true;
                state.route_write(key, epoch).map(|()| Op::Delete(key.to_vec()))
            }
        };
        match parsed {
            Ok(op) => {
                routed.push(op);
                refused.push(None);
            }
            Err(f) => refused.push(Some(f)),
        }
    }
    if bytes > MAX_BATCH_BYTES {
        let refusal = Failure::Invalid(format!(
            "a batch of {bytes} bytes of keys and values; at most {MAX_BATCH_BYTES} are allowed"
        ));
        refuse_all(results.get().init_results(n), &refusal);
        return Ok(());
    }

    let applied = match on_store(&state.store, writes, move |store| store.apply(&routed)).await {
        Ok(applied) => applied,
        Err(failure) => {
            refuse_all(results.get().init_results(n), &failure);
            return Ok(());
        }
    };

    let mut list = results.get().init_results(n);
    let mut applied = applied.into_iter();
    let mut answer_bytes = 0usize;
    for (i, routing) in refused.into_iter().enumerate() {
        let mut r = list.reborrow().get(i as u32);
        let outcome = match routing {
            Some(f) => Err(f),
            None => applied
                .next()
                .ok_or_else(|| capnp::Error::failed("store answered fewer operations than it was given".into()))?
                .map_err(refusal),
        };
        match outcome {
            Ok(Applied::Value(Some(v))) if v.len() > MAX_INLINE_VALUE => Failure::TooLarge {
                what: "value (use getStream)".into(),
                limit: MAX_INLINE_VALUE as u64,
                actual: v.len() as u64,
            }
            .write(r.init_failure()),
            Ok(Applied::Value(Some(v))) if answer_bytes + v.len() > MAX_BATCH_BYTES => Failure::TooLarge {
                what: BATCH_ANSWER_FULL.into(),
                limit: MAX_BATCH_BYTES as u64,
                actual: (answer_bytes + v.len()) as u64,
            }
            .write(r.init_failure()),
            Ok(Applied::Value(Some(v))) => {
                answer_bytes += v.len();
                r.set_value(&v);
            }
            Ok(Applied::Value(None)) => r.set_not_found(()),
            Ok(Applied::Stored) => r.set_stored(()),
            Ok(Applied::Deleted(was)) => r.set_deleted(was),
            Err(f) => f.write(r.init_failure()),
        }
    }
    Ok(())
}

/// Answers every operation of a batch with `failure`.
fn refuse_all(mut list: capnp::struct_list::Builder<'_, key_op_result::Owned>, failure: &Failure) {
    for i in 0..list.len() {
        failure.write(list.reborrow().get(i).init_failure());
    }
}
