//! The wire form of key-request batches (`Worker.batch`, `Master.batch`):
//! their limits, the requests and answers as owned values, and the codecs
//! between those and the schema's `KeyOp` / `KeyOpResult` lists. The
//! batching itself (queueing requests in flight into one call) lives with
//! the callers, in wimpy-net.

use crate::wimpy_capnp::{delete_result, get_result, key_op, key_op_result, write_result};
use crate::{Failure, LimitKind};

/// Most operations in one `Worker.batch` (the schema's `maxBatchOps`).
pub const MAX_BATCH_OPS: usize = crate::wimpy_capnp::MAX_BATCH_OPS as usize;

/// Most bytes of keys and values in one batch message, each way (the
/// schema's `maxBatchBytes`).
pub const MAX_BATCH_BYTES: usize = crate::wimpy_capnp::MAX_BATCH_BYTES as usize;

/// Largest value a put sends in a batch: a larger one would fill a batch
/// message by itself, so it goes in a message of its own.
pub const BATCHED_VALUE_LIMIT: usize = 64 << 10;

/// Largest value answered inline (the schema's `maxInlineValue`).
const MAX_INLINE_VALUE: usize = crate::wimpy_capnp::MAX_INLINE_VALUE as usize;

/// The operations of a batch call as requests, or the refusal of the whole
/// batch (`invalid`) when it holds more than [`MAX_BATCH_OPS`] operations
/// or more than [`MAX_BATCH_BYTES`] of keys and values.
pub fn read_requests(
    ops: capnp::struct_list::Reader<'_, key_op::Owned>,
) -> capnp::Result<Result<Vec<KeyRequest>, Failure>> {
    let n = ops.len() as usize;
    if n > MAX_BATCH_OPS {
        return Ok(Err(Failure::Invalid(format!("a batch of {n} operations; at most {MAX_BATCH_OPS} are allowed"))));
    }
    let mut requests = Vec::with_capacity(n);
    let mut bytes = 0usize;
    for op in ops.iter() {
        let key = op.get_key()?;
        bytes += key.len();
        requests.push(match op.which()? {
            key_op::Get(()) => KeyRequest::Get(key.to_vec()),
            key_op::Put(value) => {
                let value = value?;
                bytes += value.len();
                if bytes > MAX_BATCH_BYTES {
                    break;
                }
                KeyRequest::Put(key.to_vec(), value.to_vec())
            }
            key_op::Delete(()) => KeyRequest::Delete(key.to_vec()),
        });
    }
    if bytes > MAX_BATCH_BYTES {
        return Ok(Err(Failure::Invalid(format!(
            "a batch of more than {MAX_BATCH_BYTES} bytes of keys and values; at most {MAX_BATCH_BYTES} are allowed"
        ))));
    }
    Ok(Ok(requests))
}

/// Writes the answers of a batch. Values are answered while the answer
/// holds at most [`MAX_BATCH_BYTES`] of them; a get whose value would not
/// fit is answered `tooLarge` of kind `batchAnswerFull`, and one over
/// `maxInlineValue` `tooLarge` of kind `valueNeedsStream`, as `get` would.
pub fn write_answers(mut list: capnp::struct_list::Builder<'_, key_op_result::Owned>, answers: Vec<KeyAnswer>) {
    let mut answer_bytes = 0usize;
    for (i, answer) in answers.into_iter().enumerate() {
        let mut r = list.reborrow().get(i as u32);
        match answer {
            KeyAnswer::Value(v) if v.len() > MAX_INLINE_VALUE => Failure::TooLarge {
                kind: LimitKind::ValueNeedsStream,
                limit: MAX_INLINE_VALUE as u64,
                actual: v.len() as u64,
            }
            .write(r.init_failure()),
            KeyAnswer::Value(v) if answer_bytes + v.len() > MAX_BATCH_BYTES => Failure::TooLarge {
                kind: LimitKind::BatchAnswerFull,
                limit: MAX_BATCH_BYTES as u64,
                actual: (answer_bytes + v.len()) as u64,
            }
            .write(r.init_failure()),
            KeyAnswer::Value(v) => {
                answer_bytes += v.len();
                r.set_value(&v);
            }
            KeyAnswer::NotFound => r.set_not_found(()),
            KeyAnswer::Stored => r.set_stored(()),
            KeyAnswer::Deleted(was) => r.set_deleted(was),
            KeyAnswer::Failed(f) => f.write(r.init_failure()),
        }
    }
}

/// Fills a batch call's operations.
pub fn write_requests(mut ops: capnp::struct_list::Builder<'_, key_op::Owned>, requests: &[KeyRequest]) {
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

/// The answers of a batch call that sent `expected` operations.
pub fn read_answers(
    results: capnp::struct_list::Reader<'_, key_op_result::Owned>,
    expected: usize,
) -> capnp::Result<Vec<KeyAnswer>> {
    if results.len() as usize != expected {
        return Err(capnp::Error::failed(format!(
            "a batch of {expected} operations was answered with {} results",
            results.len()
        )));
    }
    results.iter().map(read_answer).collect()
}

/// One key operation, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRequest {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl KeyRequest {
    /// The key the request is about.
    pub fn key(&self) -> &[u8] {
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

impl KeyAnswer {
    /// A `Worker.get` or `Master.get` answer. `streamed` is what getStream
    /// answers, never get: a protocol error.
    pub fn from_get(r: get_result::Reader<'_>) -> capnp::Result<KeyAnswer> {
        Ok(match r.which()? {
            get_result::Value(v) => KeyAnswer::Value(v?.to_vec()),
            get_result::NotFound(()) => KeyAnswer::NotFound,
            get_result::Streamed(_) => return Err(capnp::Error::failed("a get answered `streamed`".into())),
            get_result::Failure(f) => KeyAnswer::Failed(Failure::read(f?)?),
        })
    }

    /// A `put` answer.
    pub fn from_write(r: write_result::Reader<'_>) -> capnp::Result<KeyAnswer> {
        Ok(match r.which()? {
            write_result::Ok(()) => KeyAnswer::Stored,
            write_result::Failure(f) => KeyAnswer::Failed(Failure::read(f?)?),
        })
    }

    /// A `delete` answer.
    pub fn from_delete(r: delete_result::Reader<'_>) -> capnp::Result<KeyAnswer> {
        Ok(match r.which()? {
            delete_result::Deleted(was) => KeyAnswer::Deleted(was),
            delete_result::Failure(f) => KeyAnswer::Failed(Failure::read(f?)?),
        })
    }

    /// Whether this get was refused only because the batch's answer was
    /// full: ask for that key on its own.
    pub fn is_answer_full(&self) -> bool {
        matches!(self, KeyAnswer::Failed(Failure::TooLarge { kind: LimitKind::BatchAnswerFull, .. }))
    }

    /// Whether this is an answer `request` can have: a failure, or the
    /// outcome of its own kind.
    pub fn answers(&self, request: &KeyRequest) -> bool {
        matches!(
            (request, self),
            (_, KeyAnswer::Failed(_))
                | (KeyRequest::Get(_), KeyAnswer::Value(_) | KeyAnswer::NotFound)
                | (KeyRequest::Put(..), KeyAnswer::Stored)
                | (KeyRequest::Delete(_), KeyAnswer::Deleted(_))
        )
    }

    /// A get's outcome: the value, if the key was there. Any other answer
    /// comes back as it is.
    pub fn into_value(self) -> Result<Option<Vec<u8>>, KeyAnswer> {
        match self {
            KeyAnswer::Value(v) => Ok(Some(v)),
            KeyAnswer::NotFound => Ok(None),
            other => Err(other),
        }
    }

    /// A put's outcome. Any other answer comes back as it is.
    pub fn into_stored(self) -> Result<(), KeyAnswer> {
        match self {
            KeyAnswer::Stored => Ok(()),
            other => Err(other),
        }
    }

    /// A delete's outcome: whether the key was there. Any other answer
    /// comes back as it is.
    pub fn into_deleted(self) -> Result<bool, KeyAnswer> {
        match self {
            KeyAnswer::Deleted(was) => Ok(was),
            other => Err(other),
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
