//! Values larger than one message: sent to the caller's `ByteSink` in
//! chunks (getStream), or received through a `ValueUpload` (putStream).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use wimpy_net::deadline::{CALL, within};
use wimpy_schema::wimpy_capnp::{byte_sink, value_upload};

use super::WorkerState;
use wimpy_schema::{Failure, LimitKind};

/// Bytes per chunk (the schema's `maxChunk`).
pub const CHUNK: usize = wimpy_schema::wimpy_capnp::MAX_CHUNK as usize;

/// Writes `value` to `sink` in chunks; returns the bytes sent.
pub async fn send_value(value: &[u8], sink: &byte_sink::Client) -> Result<u64, capnp::Error> {
    for chunk in value.chunks(CHUNK) {
        let mut req = sink.write_request();
        req.get().set_chunk(chunk);
        within(CALL, "a chunk to the sink", req.send()).await?;
    }
    within(CALL, "the sink's done", sink.done_request().send().promise).await?;
    Ok(value.len() as u64)
}

/// Collects an announced number of bytes, then stores them under the key.
///
/// The bytes count against the worker's upload cap as they arrive (not as
/// announced), and are given back when the upload ends: a write past the
/// cap fails the stream at once, and the commit answers `overloaded`.
#[derive(Debug)]
pub struct Upload {
    state: Arc<WorkerState>,
    key: Vec<u8>,
    /// The ring epoch the upload was routed by, checked again at commit.
    epoch: u64,
    size: usize,
    buf: RefCell<Vec<u8>>,
    /// Bytes reserved against the upload cap.
    reserved: Cell<usize>,
    /// Set once something went wrong; commit reports it.
    failed: RefCell<Option<Failure>>,
}

impl Upload {
    /// Accepts an upload of `size` bytes for `key`, or refuses it up front.
    pub fn new(state: Arc<WorkerState>, key: Vec<u8>, size: u64, epoch: u64) -> Result<Upload, Failure> {
        let max = state.store_slot().options().max_value_bytes as u64;
        if size > max {
            return Err(Failure::TooLarge { kind: LimitKind::Value, limit: max, actual: size });
        }
        let size = size as usize;
        Ok(Upload {
            state,
            key,
            epoch,
            size,
            buf: RefCell::default(),
            reserved: Cell::new(0),
            failed: RefCell::new(None),
        })
    }

    /// Gives back what the upload holds of the cap.
    fn release(&self) {
        self.state.intake.release(self.reserved.replace(0));
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.release();
    }
}

impl value_upload::Server for Upload {
    async fn write(self: Rc<Self>, params: value_upload::WriteParams) -> Result<(), capnp::Error> {
        let chunk = params.get()?.get_chunk()?;
        if self.failed.borrow().is_some() {
            return Err(capnp::Error::failed("the upload was refused; its commit says why".into()));
        }
        let mut buf = self.buf.borrow_mut();
        if buf.len() + chunk.len() > self.size {
            *self.failed.borrow_mut() =
                Some(Failure::Invalid(format!("upload announced {} bytes but sent more", self.size)));
            return Ok(());
        }
        // What counts is the memory held: the buffer's capacity, grown by
        // doubling up to the announced size.
        let needed = buf.len() + chunk.len();
        let grow =
            if needed > buf.capacity() { needed.max(buf.capacity() * 2).min(self.size) - buf.capacity() } else { 0 };
        if let Err(f) = self.state.intake.reserve(grow) {
            drop(buf);
            // Nothing more of this value fits now: stop the sender, free
            // what it sent, and say why at the commit.
            *self.failed.borrow_mut() = Some(f);
            *self.buf.borrow_mut() = Vec::new();
            self.release();
            return Err(capnp::Error::overloaded("the worker holds as many upload bytes as it takes".into()));
        }
        self.reserved.set(self.reserved.get() + grow);
        let extra = buf.capacity() + grow - buf.len();
        buf.reserve_exact(extra);
        buf.extend_from_slice(chunk);
        Ok(())
    }

    async fn commit(
        self: Rc<Self>,
        _: value_upload::CommitParams,
        mut results: value_upload::CommitResults,
    ) -> Result<(), capnp::Error> {
        let failed = self.failed.borrow_mut().take();
        let received = self.buf.borrow().len();
        // Routing and the fences are checked again now, when the value is
        // stored: the ring may have moved, or the key's range be moving,
        // since the upload opened.
        let gate = self.state.admit_write(&self.key, self.epoch).await;
        let outcome = match (failed, gate) {
            (Some(refusal), _) | (None, Err(refusal)) => Err(refusal),
            (None, Ok(_)) if received != self.size => {
                Err(Failure::Invalid(format!("upload announced {} bytes but sent {received}", self.size)))
            }
            (None, Ok(_gate)) => {
                let value = std::mem::take(&mut *self.buf.borrow_mut());
                // Here and down the key's chain.
                self.state.write_one(wimpy_store::Op::Put(self.key.clone(), value)).await.map(|_| ())
            }
        };
        self.release();
        let mut r = results.get().init_result();
        match outcome {
            Ok(()) => r.set_ok(()),
            Err(refusal) => refusal.write(r.init_failure()),
        }
        Ok(())
    }
}
