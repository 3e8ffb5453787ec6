//! Moving key ranges between workers: the sending side streams the live
//! records of a range to a `RecordSink`; the receiving side merges what
//! arrives into its store. Frames are the log's own (CRC-checked on arrival).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use wimpy_net::deadline::{CALL, within};
use wimpy_schema::wimpy_capnp::record_sink;
use wimpy_schema::{KeyHashRange, key_hash};

use std::time::Duration;

use wimpy_store::{Record, RecordStreamReader, Scanned, Store, StoreError, encode_stream_record};

use crate::store_slot::StoreSlot;

/// Bytes of frames per `RecordSink.write`: large enough to keep the link
/// busy, far under the reader's traversal limit.
const CHUNK_BYTES: usize = 256 << 10;
/// Largest piece of a chunk in one `RecordSink.write` (a chunk holding a
/// large value is larger than the chunk size).
const PIECE_BYTES: usize = wimpy_schema::wimpy_capnp::MAX_CHUNK as usize;
/// Chunks read ahead of the network.
const READ_AHEAD: usize = 4;

/// Key hashes per `RecordSink.unchanged`.
const HASHES_PER_CALL: usize = 32 << 10;

/// What one pass of a range move sends.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pass {
    /// 0: every live record. Otherwise only the records versioned above
    /// it, and the key hashes of the others.
    pub after: u64,
    /// The most frame bytes per second to send; 0 for no cap.
    pub bytes_per_second: u64,
}

/// What the scan hands the network.
enum Chunk {
    Frames(Vec<u8>, u64),
    Unchanged(Vec<u64>),
}

/// Streams the live records of `ranges` to `sink`, as `pass` says, in one
/// pass over the log; returns how many records went.
pub async fn send_ranges(
    store: Arc<Store>,
    ranges: Vec<KeyHashRange>,
    sink: record_sink::Client,
    pass: Pass,
) -> Result<u64, capnp::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Chunk, String>>(READ_AHEAD);
    // The scan is blocking I/O: it runs on its own thread.
    let scanner = std::thread::spawn(move || {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        let mut hashes = Vec::new();
        let mut count = 0;
        let found: Box<dyn Iterator<Item = wimpy_store::Result<Scanned>>> = match pass.after {
            0 => Box::new(store.scan_ranges(ranges).map(|r| r.map(Scanned::Changed))),
            after => Box::new(store.scan_ranges_after(ranges, after)),
        };
        for record in found {
            match record {
                Ok(Scanned::Changed(r)) => {
                    encode_stream_record(&mut chunk, &r);
                    count += 1;
                    if chunk.len() >= CHUNK_BYTES {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + 4096));
                        if tx.blocking_send(Ok(Chunk::Frames(full, count))).is_err() {
                            return;
                        }
                        count = 0;
                    }
                }
                Ok(Scanned::Unchanged { hash, .. }) => {
                    hashes.push(hash);
                    if hashes.len() == HASHES_PER_CALL
                        && tx.blocking_send(Ok(Chunk::Unchanged(std::mem::take(&mut hashes)))).is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    // A receiver that is gone already failed the call.
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
            }
        }
        // As above: a receiver that is gone already failed the call.
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(Chunk::Frames(chunk, count)));
        }
        if !hashes.is_empty() {
            let _ = tx.blocking_send(Ok(Chunk::Unchanged(hashes)));
        }
    });
    let mut sent = 0;
    let (began, mut bytes) = (tokio::time::Instant::now(), 0u64);
    while let Some(next) = rx.recv().await {
        match next.map_err(|e| capnp::Error::failed(format!("reading the range to send: {e}")))? {
            Chunk::Frames(frames, count) => {
                // A record larger than a message carries goes in pieces,
                // which the receiver joins.
                for piece in frames.chunks(PIECE_BYTES) {
                    let mut req = sink.write_request();
                    req.get().set_frames(piece);
                    within(CALL, "a chunk to the sink", req.send()).await?;
                }
                sent += count;
                bytes += frames.len() as u64;
                if pass.bytes_per_second > 0 {
                    // Ahead of the cap: wait until these bytes are due.
                    let due = Duration::from_secs_f64(bytes as f64 / pass.bytes_per_second as f64);
                    tokio::time::sleep_until(began + due).await;
                }
            }
            Chunk::Unchanged(hashes) => {
                let mut req = sink.unchanged_request();
                let mut list = req.get().init_hashes(hashes.len() as u32);
                for (i, h) in hashes.iter().enumerate() {
                    list.set(i as u32, *h);
                }
                within(CALL, "unchanged keys to the sink", req.send().promise).await?;
            }
        }
    }
    if scanner.join().is_err() {
        return Err(capnp::Error::failed("the range scan panicked".into()));
    }
    let received = within(CALL, "the sink's done", sink.done_request().send().promise).await?.get()?.get_records();
    if received != sent {
        return Err(capnp::Error::failed(format!("sent {sent} records, the receiver took {received}")));
    }
    Ok(sent)
}

/// A move's answer when the store it reads or writes is out of service: the
/// move fails, and the master retries it or gives up on it.
pub fn store_out_of_service(e: StoreError) -> capnp::Error {
    capnp::Error::failed(format!("the store cannot move records now: {e}"))
}

/// The receiving end of a range move. It takes the store from its slot
/// for every chunk, so a store reopened after a failure is the one written.
#[derive(Debug)]
pub struct RangeReceiver {
    store: Arc<StoreSlot>,
    received: Cell<u64>,
    /// The start of a frame whose rest is in the next write.
    partial: RefCell<Vec<u8>>,
    /// With `Some`, the ranges this sink replaces, and the hashes of the
    /// keys received or said unchanged so far: done deletes the ranges'
    /// other keys.
    replacing: Option<(Vec<KeyHashRange>, RefCell<HashSet<u64>>)>,
    /// Whether a record is merged only where it is newer than the store's
    /// copy of its key (a scrub's repair of a chain member).
    newer_only: bool,
}

impl RangeReceiver {
    /// A sink that merges what it receives; with `replace`, one whose done
    /// also deletes the keys of `ranges` it did not receive.
    pub fn new(store: Arc<StoreSlot>, ranges: Vec<KeyHashRange>, replace: bool) -> RangeReceiver {
        RangeReceiver {
            store,
            received: Cell::new(0),
            partial: RefCell::new(Vec::new()),
            replacing: replace.then(|| (ranges, Default::default())),
            newer_only: false,
        }
    }

    /// A sink that merges only records newer than the store's copies of
    /// their keys, and no deletes.
    pub fn newer_only(store: Arc<StoreSlot>) -> RangeReceiver {
        RangeReceiver { newer_only: true, ..RangeReceiver::new(store, Vec::new(), false) }
    }
}

impl record_sink::Server for RangeReceiver {
    async fn write(self: Rc<Self>, params: record_sink::WriteParams) -> Result<(), capnp::Error> {
        let frames = {
            let mut partial = self.partial.borrow_mut();
            partial.extend_from_slice(params.get()?.get_frames()?);
            let whole = wimpy_store::whole_frames_len(&partial);
            let rest = partial.split_off(whole);
            std::mem::replace(&mut *partial, rest)
        };
        let store = self.store.get().map_err(store_out_of_service)?;
        if self.partial.borrow().len() > store.options().max_value_bytes + store.options().max_key_bytes + 64 {
            return Err(capnp::Error::failed("a record in the stream is larger than this store takes".into()));
        }
        let newer_only = self.newer_only;
        let (merged, hashes) = tokio::task::spawn_blocking(move || {
            let opts = store.options();
            let mut hashes = Vec::new();
            let reader = RecordStreamReader::new(&frames[..], opts.max_key_bytes, opts.max_value_bytes)
                .inspect(|r| hashes.extend(r.as_ref().ok().map(|r| key_hash(&r.key))));
            match newer_only {
                true => store.merge_newer(reader),
                false => store.merge(reader),
            }
            .map(|merged| (merged, hashes))
        })
        .await
        .map_err(|e| capnp::Error::failed(format!("merge task: {e}")))?
        .map_err(|e| capnp::Error::failed(format!("merging received records: {e}")))?;
        // Every record read counts as taken, those a newer-only merge
        // passed over too: the sender checks the count.
        self.received.set(self.received.get() + hashes.len() as u64);
        if self.newer_only && merged > 0 {
            tracing::info!(
                merged,
                of = hashes.len(),
                "took records newer than this worker's copies (a scrub's repair)"
            );
        }
        if let Some((_, received)) = &self.replacing {
            received.borrow_mut().extend(hashes);
        }
        Ok(())
    }

    async fn unchanged(
        self: Rc<Self>,
        params: record_sink::UnchangedParams,
        _: record_sink::UnchangedResults,
    ) -> Result<(), capnp::Error> {
        let Some((_, received)) = &self.replacing else {
            return Err(capnp::Error::failed("unchanged keys mean something only to a sink that replaces".into()));
        };
        received.borrow_mut().extend(params.get()?.get_hashes()?.iter());
        Ok(())
    }

    async fn done(
        self: Rc<Self>,
        _: record_sink::DoneParams,
        mut results: record_sink::DoneResults,
    ) -> Result<(), capnp::Error> {
        if !self.partial.borrow().is_empty() {
            return Err(capnp::Error::failed("the stream of records ended inside a record".into()));
        }
        if let Some((ranges, received)) = &self.replacing {
            let store = self.store.get().map_err(store_out_of_service)?;
            let (scanned, received) = (ranges.clone(), received.take());
            let deleted = tokio::task::spawn_blocking(move || {
                let stale: Vec<Vec<u8>> = store
                    .scan_ranges(scanned)
                    .filter_map(|r| r.ok().map(|r| r.key))
                    .filter(|k| !received.contains(&key_hash(k)))
                    .collect();
                let n = stale.len();
                store.merge(stale.into_iter().map(|key| Ok(Record { key, value: None, version: 0 }))).map(|_| n)
            })
            .await
            .map_err(|e| capnp::Error::failed(format!("delete task: {e}")))?
            .map_err(|e| capnp::Error::failed(format!("deleting keys the sender no longer holds: {e}")))?;
            if deleted > 0 {
                tracing::info!(
                    ranges = ranges.len(),
                    deleted,
                    "deleted keys of moved ranges that their sender no longer holds"
                );
            }
        }
        results.get().set_records(self.received.get());
        Ok(())
    }
}
