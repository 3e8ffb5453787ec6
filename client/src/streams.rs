//! Values larger than one message: a get as `getStream` into a sink of this
//! client's, a put as `putStream` in chunks of `maxChunk` bytes. Either
//! answers as the request alone would, so the transport treats a stream as
//! one more way for a request to travel.

use std::cell::RefCell;
use std::rc::Rc;

use wimpy_schema::Failure;
use wimpy_schema::batch::{KeyAnswer, KeyRequest};
use wimpy_schema::wimpy_capnp::{byte_sink, get_result, worker};

/// Bytes per chunk sent (the schema's `maxChunk`).
const CHUNK: usize = wimpy_schema::wimpy_capnp::MAX_CHUNK as usize;

/// Sends `request` to worker `w` as a stream. A delete has no value to
/// stream and goes alone.
pub(crate) async fn send(w: &worker::Client, epoch: u64, request: &KeyRequest) -> capnp::Result<KeyAnswer> {
    match request {
        KeyRequest::Get(key) => get(w, epoch, key).await,
        KeyRequest::Put(key, value) => put(w, epoch, key, value).await,
        KeyRequest::Delete(_) => wimpy_net::KeyPeer::send_one(w, epoch, request).await,
    }
}

async fn get(w: &worker::Client, epoch: u64, key: &[u8]) -> capnp::Result<KeyAnswer> {
    let received = Rc::new(RefCell::new(Vec::new()));
    let sink: byte_sink::Client = capnp_rpc::new_client(Collector(received.clone()));
    let mut req = w.get_stream_request();
    req.get().set_key(key);
    req.get().set_epoch(epoch);
    req.get().set_sink(sink);
    let resp = req.send().promise.await?;
    Ok(match resp.get()?.get_result()?.which()? {
        get_result::Streamed(n) => {
            let value = std::mem::take(&mut *received.borrow_mut());
            if value.len() as u64 != n {
                return Err(capnp::Error::failed(format!("stream announced {n} bytes, {} arrived", value.len())));
            }
            KeyAnswer::Value(value)
        }
        get_result::NotFound(()) => KeyAnswer::NotFound,
        get_result::Value(v) => KeyAnswer::Value(v?.to_vec()),
        get_result::Failure(f) => KeyAnswer::Failed(Failure::read(f?)?),
    })
}

async fn put(w: &worker::Client, epoch: u64, key: &[u8], value: &[u8]) -> capnp::Result<KeyAnswer> {
    let mut req = w.put_stream_request();
    req.get().set_key(key);
    req.get().set_size(value.len() as u64);
    req.get().set_epoch(epoch);
    let resp = req.send().promise.await?;
    let r = resp.get()?;
    if r.has_failure() {
        return Ok(KeyAnswer::Failed(Failure::read(r.get_failure()?)?));
    }
    let upload = r.get_upload()?;
    let mut refused = None;
    for chunk in value.chunks(CHUNK) {
        let mut write = upload.write_request();
        write.get().set_chunk(chunk);
        if let Err(e) = write.send().await {
            refused = Some(e);
            break;
        }
    }
    // After a refused write the commit says why (overloaded, say), where
    // the worker can still answer it; else the write's error stands.
    match upload.commit_request().send().promise.await {
        Ok(done) => KeyAnswer::from_write(done.get()?.get_result()?),
        Err(e) => Err(refused.unwrap_or(e)),
    }
}

/// Collects a value streamed to this client.
pub(crate) struct Collector(pub(crate) Rc<RefCell<Vec<u8>>>);

impl byte_sink::Server for Collector {
    async fn write(self: Rc<Self>, params: byte_sink::WriteParams) -> Result<(), capnp::Error> {
        self.0.borrow_mut().extend_from_slice(params.get()?.get_chunk()?);
        Ok(())
    }
    async fn done(self: Rc<Self>, _: byte_sink::DoneParams, _: byte_sink::DoneResults) -> Result<(), capnp::Error> {
        Ok(())
    }
}
