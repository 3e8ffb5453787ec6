//! `Worker.batch`: many gets, puts and deletes in one message. A client with
//! many requests in flight to this worker pays the RPC overhead once per
//! batch, and the batch's writes share one wait for durability.

use std::sync::Arc;

use wimpy_schema::Failure;
use wimpy_schema::batch::{KeyAnswer, KeyRequest, read_requests, write_answers};
use wimpy_schema::wimpy_capnp::worker;

use super::WorkerState;
use super::chain::apply_at_head;
use wimpy_store::{Applied, Op};

pub(super) async fn batch(
    state: &Arc<WorkerState>,
    params: worker::BatchParams,
    mut results: worker::BatchResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let epoch = p.get_epoch();
    let ops = p.get_ops()?;
    let n = ops.len();
    let requests = match read_requests(ops)? {
        Ok(requests) => requests,
        Err(refused) => {
            write_answers(results.get().init_results(n), vec![KeyAnswer::Failed(refused); n as usize]);
            return Ok(());
        }
    };

    // Each operation is routed on its own; those this worker serves go to
    // the store together, in order. The batch holds the write gate for as
    // long as its writes take, like any write.
    let _gate = state.write_gate().await;
    let mut routing: Vec<Option<Failure>> = Vec::with_capacity(requests.len());
    let mut routed: Vec<Op> = Vec::with_capacity(requests.len());
    for request in requests {
        let (routed_op, op) = match request {
            KeyRequest::Get(key) => (state.route(&key, epoch), Op::Get(key)),
            KeyRequest::Put(key, value) => (state.route_write(&key, epoch), Op::Put(key, value)),
            KeyRequest::Delete(key) => (state.route_write(&key, epoch), Op::Delete(key)),
        };
        match routed_op {
            Ok(()) => {
                routed.push(op);
                routing.push(None);
            }
            Err(f) => routing.push(Some(f)),
        }
    }

    // On this worker and down each key's chain.
    let mut applied = match apply_at_head(state, routed).await {
        Ok(applied) => applied.into_iter(),
        Err(failure) => {
            write_answers(results.get().init_results(n), vec![KeyAnswer::Failed(failure); n as usize]);
            return Ok(());
        }
    };
    let mut answers = Vec::with_capacity(routing.len());
    for refused in routing {
        answers.push(match refused {
            Some(f) => KeyAnswer::Failed(f),
            None => match applied.next() {
                Some(Ok(Applied::Value(Some(v)))) => KeyAnswer::Value(v),
                Some(Ok(Applied::Value(None))) => KeyAnswer::NotFound,
                Some(Ok(Applied::Stored)) => KeyAnswer::Stored,
                Some(Ok(Applied::Deleted(was))) => KeyAnswer::Deleted(was),
                Some(Err(f)) => KeyAnswer::Failed(f),
                None => {
                    return Err(capnp::Error::failed("the store answered fewer operations than it was given".into()));
                }
            },
        });
    }
    write_answers(results.get().init_results(n), answers);
    Ok(())
}
