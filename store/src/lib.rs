//! FAWN-DS: a log-structured key-value store for flash, with a hash index in
//! DRAM that holds no keys.
//!
//! Every write is an append to the current log segment; every key costs 6
//! bytes of DRAM (a 15-bit fragment, a valid bit and a 32-bit log address)
//! and a get costs one flash read. The log is the truth: the index is
//! checkpointed now and then and otherwise rebuilt by rolling forward over
//! the log. docs/store-format.md draws the files byte by byte.
//!
//! Threads: gets are lock-free against the index and read the log with
//! positioned reads, in parallel with a put stream and with compaction.
//! Puts, deletes and compaction's copies are serialised by one writer lock,
//! which is held only while a record is framed into memory and the index is
//! updated; fsyncs happen outside it and are shared by concurrent writers.
//!
//! The store is plain threads and files: it places keys by the key hash of
//! wimpy-keyspace and must never depend on Cap'n Proto, an async runtime,
//! the compute engine or a GPU crate (`scripts/test` checks its
//! `cargo tree`), so it can be tested, benchmarked and reused alone.

mod compaction;
mod error;
mod format;
mod index;
pub mod io;
mod options;
mod recovery;
mod segment;
mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};
use wimpy_keyspace::{KeyHashRange, RangeSet, key_hash};

pub use compaction::CompactionReport;
pub use error::{Result, StoreError};
pub use format::FORMAT_VERSION;
pub use options::{CompactionOptions, Options, SyncMode};
pub use recovery::{Damage, RecoveryReport, Truncation};
pub use stream::{Record, RecordStreamReader, encode_stream_record, whole_frames_len};

/// One operation of [`Store::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// A put recording a version ([`Store::put_versioned`]).
    PutVersioned(Vec<u8>, Vec<u8>, u64),
    /// A delete recording a version ([`Store::delete_versioned`]).
    DeleteVersioned(Vec<u8>, u64),
}

impl Op {
    /// The key it reads or writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Get(k) | Op::Put(k, _) | Op::Delete(k) | Op::PutVersioned(k, _, _) | Op::DeleteVersioned(k, _) => k,
        }
    }

    /// The version a write records (0: none, and for a get).
    pub fn version(&self) -> u64 {
        match self {
            Op::PutVersioned(_, _, v) | Op::DeleteVersioned(_, v) => *v,
            _ => 0,
        }
    }
}

/// What one [`Op`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A get: the value, if the key was there.
    Value(Option<Vec<u8>>),
    /// A put: stored.
    Stored,
    /// A delete: whether the key was there.
    Deleted(bool),
}

use format::{AddrSpace, FLAG_TOMBSTONE, LogAddr, RecordRef, SegmentHeader, encode_record, key_start, record_len};
use index::Index;
use io::{Dir, OsDir};
use segment::{Scanner, Segment, SegmentTable, segment_name};

/// The active segment's appended records are written to the file once this
/// many bytes are buffered: large sequential writes, few syscalls.
const TAIL_FLUSH_BYTES: usize = 256 << 10;

/// Figures a store reports about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys a get would find.
    pub live_keys: u64,
    /// Bytes of all segment files, headers included.
    pub log_bytes: u64,
    /// Log bytes that no get can reach: overwritten and deleted records and
    /// tombstones that compaction will drop.
    pub garbage_bytes: u64,
    /// Bytes of DRAM the hash index occupies.
    pub index_bytes: u64,
    /// Segment files on disk.
    pub segments: u64,
}

/// A FAWN-DS store in one directory.
#[derive(Debug)]
pub struct Store {
    inner: Arc<Inner>,
    /// Background threads: maintenance, and the interval syncer if any.
    threads: Vec<JoinHandle<()>>,
    recovery: RecoveryReport,
}

#[derive(Debug)]
struct Inner {
    dir: Arc<dyn Dir>,
    opts: Options,
    space: AddrSpace,
    /// The current index; replaced whole when it grows.
    index: ArcSwap<Index>,
    /// Segments by slot; replaced whole when a segment comes or goes.
    segments: ArcSwap<SegmentTable>,
    writer: Mutex<Writer>,
    commit: GroupCommit,
    poison: Poison,
    /// Bytes appended since the last checkpoint.
    since_checkpoint: AtomicU64,
    /// The highest version of any record appended or recovered: where a
    /// chain's head goes on numbering writes after a restart.
    max_version: AtomicU64,
    /// Held shared by range scans, exclusively by compaction while it moves
    /// records: a scan must not miss a record that moves behind it.
    scan_gate: parking_lot::RwLock<()>,
    /// Serialises checkpoints and compaction rounds.
    maintenance: Mutex<()>,
    /// Keys the index should be sized for when it next grows: recovery sets
    /// it from how much log is left to replay, so a replay grows the index
    /// once or twice instead of at every doubling.
    grow_hint: AtomicU64,
    /// Wakes the background threads early (on close).
    wake: (Mutex<()>, Condvar),
    closed: AtomicBool,
}

/// State only the writer lock's holder touches.
#[derive(Debug)]
struct Writer {
    /// Segment records are appended to.
    active: Arc<Segment>,
    /// Sequence number for the next segment.
    next_seq: u64,
    /// Segments removed by compaction whose slots wait until no reader holds
    /// a segment table that maps them.
    retired: Vec<Arc<Segment>>,
    /// Total bytes appended in this process; group commit compares these.
    appended: u64,
    /// Reused buffer for reading records under the lock.
    scratch: Vec<u8>,
}

/// Leader/follower fsync sharing for [`SyncMode::Always`].
#[derive(Debug, Default)]
struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct CommitState {
    /// Every byte appended up to here is on flash.
    durable: u64,
    /// A writer is fsyncing on everyone's behalf.
    syncing: bool,
}

#[derive(Debug, Default)]
struct Poison {
    set: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl Store {
    /// Opens (or creates) the store in directory `path`, recovering from
    /// whatever a crash left there.
    pub fn open(path: impl AsRef<std::path::Path>, opts: Options) -> Result<Store> {
        let dir = OsDir::new(path.as_ref()).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => StoreError::Locked { path: path.as_ref().to_path_buf() },
            _ => StoreError::Io { op: "opening the store directory", source: e },
        })?;
        Store::open_in(Arc::new(dir), opts)
    }

    /// Opens the store in `dir`, which tests replace to inject I/O faults.
    pub fn open_in(dir: Arc<dyn Dir>, opts: Options) -> Result<Store> {
        opts.validate()?;
        let (inner, recovery) = recovery::open(dir, opts)?;
        let inner = Arc::new(inner);
        let mut threads = Vec::new();
        let spawn = |name: &str, body: fn(&Inner)| {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || body(&inner))
                .map_err(StoreError::io("starting a store thread"))
        };
        threads.push(spawn("wimpy-store", Inner::maintain)?);
        if let SyncMode::Interval(_) = inner.opts.sync {
            // Its own thread: a long compaction round must not hold up the
            // fsync that bounds what a crash may lose.
            threads.push(spawn("wimpy-sync", Inner::sync_every_interval)?);
        }
        Ok(Store { inner, threads, recovery })
    }

    /// The options the store runs with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// What opening found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Why the store refuses every call, if a failed write or fsync
    /// poisoned it. Closing it and opening its directory again (see
    /// [`Store::dir`]) recovers from the log, as after a crash.
    /// The answer is the failure that did it ("fsyncing the log failed: ...").
    pub fn poisoned(&self) -> Option<String> {
        if !self.inner.poison.set.load(Ordering::Acquire) {
            return None;
        }
        Some(self.inner.poison.cause.lock().clone().unwrap_or_else(|| "unknown".into()))
    }

    /// The directory the store lives in. Opening it again once this store
    /// is closed keeps its lock held throughout, so nothing else can take
    /// the directory in between.
    pub fn dir(&self) -> Arc<dyn Dir> {
        self.inner.dir.clone()
    }

    /// Stores `value` under `key`, replacing any earlier value.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_versioned(key, value, 0)
    }

    /// [`Store::put`], recording `version` with the value (0: none). The
    /// store keeps versions and reports the highest; ordering writes by
    /// them is the caller's business.
    pub fn put_versioned(&self, key: &[u8], value: &[u8], version: u64) -> Result<()> {
        let lsn = self.append_put(key, value, version)?;
        self.inner.wait_durable(lsn)
    }

    /// Checks and appends a put, without waiting for durability; returns
    /// the LSN to wait for.
    fn append_put(&self, key: &[u8], value: &[u8], version: u64) -> Result<u64> {
        self.inner.check_key(key)?;
        if value.len() > self.inner.opts.max_value_bytes {
            return Err(StoreError::ValueTooLarge { len: value.len(), max: self.inner.opts.max_value_bytes });
        }
        self.inner.write(key, value, version)
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_versioned(key)?.map(|(value, _)| value))
    }

    /// The value stored under `key` and the version it was stored with (0:
    /// none), if any.
    pub fn get_versioned(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>> {
        self.inner.check_key(key)?;
        self.inner.check_poison()?;
        let mut buf = Vec::new();
        match self.inner.read_live(key_hash(key), key, &mut buf)? {
            Some(Found { damage: Some(e), .. }) => Err(e),
            Some(Found { damage: None, .. }) => {
                let rec = RecordRef::verified(&buf);
                let (version, value_at, end) =
                    (rec.version, rec.header.body_end() - rec.value.len(), rec.header.body_end());
                // The value is taken out of the read buffer in place: a
                // large value costs no second allocation (and its page
                // faults), only a move to the buffer's front.
                buf.truncate(end);
                buf.drain(..value_at);
                Ok(Some((buf, version)))
            }
            None => Ok(None),
        }
    }

    /// Calls `f` with the value stored under `key`, if any, as the log read
    /// it: no copy is made of it (a server answering a get writes it
    /// straight into its answer).
    pub fn with_value<T>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        self.inner.check_key(key)?;
        self.inner.check_poison()?;
        let mut buf = Vec::new();
        match self.inner.read_live(key_hash(key), key, &mut buf)? {
            Some(Found { damage: Some(e), .. }) => Err(e),
            Some(Found { damage: None, .. }) => Ok(Some(f(RecordRef::verified(&buf).value))),
            None => Ok(None),
        }
    }

    /// The highest version of the records appended to or recovered from
    /// the log (0 if none had one), overwritten ones included. A checkpoint
    /// keeps it; only an index rebuilt from the log alone, after compaction
    /// dropped the records that held it, can come back lower.
    pub fn max_version(&self) -> u64 {
        self.inner.max_version.load(Ordering::Acquire)
    }

    /// Removes `key`. Returns whether it was there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.delete_versioned(key, 0)
    }

    /// [`Store::delete`], recording `version` with the tombstone (0: none).
    pub fn delete_versioned(&self, key: &[u8], version: u64) -> Result<bool> {
        match self.append_delete(key, version)? {
            Some(lsn) => {
                self.inner.wait_durable(lsn)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Checks and appends a delete, without waiting for durability; returns
    /// the LSN to wait for, or `None` when the key was not there.
    fn append_delete(&self, key: &[u8], version: u64) -> Result<Option<u64>> {
        self.inner.check_key(key)?;
        self.inner.remove(key, version)
    }

    /// Forces everything written so far onto flash, whatever the sync mode.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_poison()?;
        self.inner.sync_all()
    }

    /// Rewrites segments with garbage now, ignoring the rate limit and the
    /// garbage thresholds, and reclaims their space.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.inner.compact(true)
    }

    /// Writes an index checkpoint now, so that the next open rolls forward
    /// over as little log as possible.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// Live records (key, value, version) whose key hash lies in `range`, in
    /// log order: what a range move streams to another node (a split).
    /// Writes made while the iterator runs may or may not be seen; nothing
    /// live at the start and untouched since is missed, even if compaction
    /// moves it (compaction waits for running scans).
    pub fn scan(&self, range: KeyHashRange) -> RangeScan<'_> {
        RangeScan::new(&self.inner, vec![range], None)
    }

    /// [`Store::scan`] over every range of `ranges` in one pass over the
    /// log (a scan reads all of it, whatever the range).
    pub fn scan_ranges(&self, ranges: Vec<KeyHashRange>) -> RangeScan<'_> {
        RangeScan::new(&self.inner, ranges, None)
    }

    /// What a copy of `ranges` taken earlier needs to become this store's
    /// copy, in one pass over the log: every live record versioned above
    /// `after` in full, and the key hash of every other live one. Applying
    /// the records and deleting the keys the copy holds that are in
    /// neither makes the copy equal to this store's ranges, if every write
    /// numbered up to `after` was in the log when that copy began (deletes
    /// need no tombstones, which compaction may have dropped since).
    /// Unversioned records (version 0) count as older than any `after`.
    pub fn scan_ranges_after(&self, ranges: Vec<KeyHashRange>, after: u64) -> ChangesSince<'_> {
        ChangesSince(RangeScan::new(&self.inner, ranges, Some(after)))
    }

    /// A digest of each of `ranges`, in one pass over the log: how many
    /// live records it holds, and the XOR of a hash of each one's key hash
    /// and version. Two stores whose digests of a range match hold the
    /// same keys at the same versions there (but for a 64-bit collision);
    /// a record the store cannot read (damaged on disk) counts as absent.
    pub fn digest_ranges(&self, ranges: &[KeyHashRange]) -> Result<Vec<RangeDigest>> {
        let mut digests = vec![RangeDigest::default(); ranges.len()];
        let index = RangeIndex::new(ranges);
        for found in self.scan_ranges_after(ranges.to_vec(), u64::MAX) {
            let Scanned::Unchanged { hash, version } = found? else { continue };
            if let Some(i) = index.of(hash) {
                digests[i].add(hash, version);
            }
        }
        Ok(digests)
    }

    /// [`Store::merge`] of puts, each applied only where it is newer than
    /// what the store holds of its key (a higher version, or a key it does
    /// not hold or cannot read): a copy from another replica never takes
    /// a key back to an older version. Deletes in the stream are passed
    /// over (without the version of a key's deletion, a store cannot tell
    /// a delete it missed from a put it has not had yet). Returns how many
    /// applied.
    pub fn merge_newer(&self, records: impl IntoIterator<Item = Result<Record>>) -> Result<u64> {
        let newer = records.into_iter().filter_map(|r| match r {
            Ok(r) if r.value.is_none() => None,
            Ok(r) => match self.get_versioned(&r.key) {
                Ok(Some((_, held))) if held >= r.version => None,
                // Absent, older, or damaged here: the copy replaces it.
                _ => Some(Ok(r)),
            },
            Err(e) => Some(Err(e)),
        });
        self.merge(newer)
    }

    /// Applies a record stream from another node (a merge): puts and, for
    /// records without a value, deletes. Returns how many records applied.
    /// The whole stream shares one wait for durability at its end.
    pub fn merge(&self, records: impl IntoIterator<Item = Result<Record>>) -> Result<u64> {
        let mut applied = 0;
        let mut durable_at = 0;
        for r in records {
            let r = r?;
            self.inner.check_key(&r.key)?;
            let lsn = match &r.value {
                Some(v) if v.len() > self.inner.opts.max_value_bytes => {
                    return Err(StoreError::ValueTooLarge { len: v.len(), max: self.inner.opts.max_value_bytes });
                }
                Some(v) => self.inner.write(&r.key, v, r.version)?,
                None => self.inner.remove(&r.key, r.version)?.unwrap_or(0),
            };
            durable_at = durable_at.max(lsn);
            applied += 1;
        }
        self.inner.wait_durable(durable_at)?;
        Ok(applied)
    }

    /// Carries out `ops` in order, then waits once for all of their writes
    /// to be durable (per the sync mode): a batch of writes costs one fsync,
    /// not one each. Every operation gets its own answer; a failed wait for
    /// durability fails every write of the batch (and poisons the store).
    pub fn apply(&self, ops: &[Op]) -> Vec<Result<Applied>> {
        let mut durable_at = 0;
        let mut answers: Vec<Result<Applied>> = ops
            .iter()
            .map(|op| match op {
                Op::Get(key) => self.get(key).map(Applied::Value),
                Op::Put(key, value) | Op::PutVersioned(key, value, _) => {
                    durable_at = durable_at.max(self.append_put(key, value, op.version())?);
                    Ok(Applied::Stored)
                }
                Op::Delete(key) | Op::DeleteVersioned(key, _) => {
                    let lsn = self.append_delete(key, op.version())?;
                    durable_at = durable_at.max(lsn.unwrap_or(0));
                    Ok(Applied::Deleted(lsn.is_some()))
                }
            })
            .collect();
        if durable_at == 0 {
            return answers;
        }
        if let Err(e) = self.inner.wait_durable(durable_at) {
            let cause = e.to_string();
            for (op, answer) in ops.iter().zip(&mut answers) {
                if !matches!(op, Op::Get(_)) && answer.is_ok() {
                    *answer = Err(StoreError::Poisoned { cause: cause.clone() });
                }
            }
        }
        answers
    }

    /// Live keys, log size, garbage and index memory.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    /// Flushes, checkpoints and stops the background thread.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.threads.is_empty() {
            return Ok(());
        }
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.wake();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                // The panic was already printed; the store's files are as
                // the log left them, which the next open recovers from.
                tracing::error!("a store background thread panicked");
            }
        }
        if self.inner.poison.set.load(Ordering::SeqCst) {
            return Err(self.inner.poisoned());
        }
        self.inner.checkpoint()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A store dropped without close still leaves a checkpoint; what
        // fails here has poisoned the store and shows again on reopen.
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the store");
        }
    }
}

impl Inner {
    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() || key.len() > self.opts.max_key_bytes {
            return Err(StoreError::KeyTooLarge { len: key.len(), max: self.opts.max_key_bytes });
        }
        Ok(())
    }

    fn check_poison(&self) -> Result<()> {
        if self.poison.set.load(Ordering::Acquire) {
            return Err(self.poisoned());
        }
        Ok(())
    }

    fn poisoned(&self) -> StoreError {
        StoreError::Poisoned { cause: self.poison.cause.lock().clone().unwrap_or_else(|| "unknown".into()) }
    }

    /// Marks the store poisoned by `err` and returns the error to hand up.
    fn poison(&self, err: StoreError) -> StoreError {
        let mut cause = self.poison.cause.lock();
        if cause.is_none() {
            *cause = Some(err.to_string());
        }
        self.poison.set.store(true, Ordering::Release);
        err
    }

    fn wake(&self) {
        let (lock, cv) = &self.wake;
        let _held = lock.lock();
        cv.notify_all();
    }

    /// Sleeps for `d` or until [`Inner::wake`]; false once the store closes.
    fn nap(&self, d: Duration) -> bool {
        let (lock, cv) = &self.wake;
        let mut held = lock.lock();
        if !self.closed.load(Ordering::SeqCst) {
            cv.wait_for(&mut held, d);
        }
        !self.closed.load(Ordering::SeqCst) && !self.poison.set.load(Ordering::Acquire)
    }

    /// Finds the live record of `key` (hash `h`) and reads it into `buf`.
    /// Lock-free: safe beside writers and compaction.
    fn read_live(&self, h: u64, key: &[u8], buf: &mut Vec<u8>) -> Result<Option<Found>> {
        // Snapshot the segment table before the index (see SegmentTable).
        let segments = self.segments.load();
        let candidates = self.index.load().lookup(h);
        for &addr in candidates.as_slice() {
            let (slot, pos) = self.space.split(addr);
            let found = match segments.get(slot) {
                Some(seg) => read_candidate(seg, pos, key, buf)?,
                // A segment newer than our snapshot: take a fresh one.
                None => match self.segments.load().get(slot) {
                    Some(seg) => read_candidate(seg, pos, key, buf)?,
                    None => Candidate::NotMine,
                },
            };
            match found {
                Candidate::NotMine => {}
                Candidate::Mine => return Ok(Some(Found { addr, damage: None })),
                Candidate::DamagedMine(e) => {
                    return Ok(Some(Found { addr, damage: Some(e) }));
                }
            }
        }
        Ok(None)
    }

    /// Like [`Inner::read_live`] under the writer lock: the address and
    /// padded length of `key`'s live record. A damaged record of the key
    /// still counts as its record, so a put or delete can replace it.
    fn find_live_locked(&self, w: &mut Writer, h: u64, key: &[u8]) -> Result<Option<(LogAddr, u64)>> {
        let mut buf = std::mem::take(&mut w.scratch);
        let found = self.read_live(h, key, &mut buf);
        // The header's value length, checksum or not: a damaged record is
        // still framed by it (the key matched at its place).
        let value_len = buf.get(4..8).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
        let flags = buf.get(10).copied().unwrap_or(0);
        let len = format::framed_len(flags, key.len(), value_len);
        w.scratch = buf;
        Ok(found?.map(|f| (f.addr, len)))
    }

    fn segment_of(&self, addr: LogAddr) -> Option<Arc<Segment>> {
        self.segments.load().get(self.space.split(addr).0).cloned()
    }

    /// Takes `len` bytes off the live count of the segment holding `addr`.
    fn release_live(&self, addr: LogAddr, len: u64) {
        if let Some(seg) = self.segment_of(addr) {
            // The update never declines, so fetch_update cannot fail.
            let _ = seg.live_bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(len)));
        }
    }

    /// Appends a tombstone for `key` if it is live and drops it from the
    /// index. Returns the position durability must reach, or `None` if the
    /// key was not there.
    fn remove(&self, key: &[u8], version: u64) -> Result<Option<u64>> {
        let h = key_hash(key);
        let mut w = self.writer.lock();
        self.check_poison()?;
        let Some((old, old_len)) = self.find_live_locked(&mut w, h, key)? else {
            return Ok(None);
        };
        let (_, lsn) = self.append(&mut w, key, &[], FLAG_TOMBSTONE, version)?;
        self.index.load().remove(h, old);
        self.release_live(old, old_len);
        Ok(Some(lsn))
    }

    /// Appends a put and points the index at it. Returns the log position
    /// group commit must reach before the caller may acknowledge.
    fn write(&self, key: &[u8], value: &[u8], version: u64) -> Result<u64> {
        let h = key_hash(key);
        let mut w = self.writer.lock();
        self.check_poison()?;
        let old = self.find_live_locked(&mut w, h, key)?;
        if old.is_none() {
            // Grow first: once the record is in the log the index must take
            // it, or a restart would bring back a put that failed.
            self.make_room(&mut w)?;
        }
        let (addr, lsn) = self.append(&mut w, key, value, 0, version)?;
        let len = record_len(key.len(), value.len(), version);
        // The record went to the active segment (append may have rolled it).
        w.active.live_bytes.fetch_add(len, Ordering::AcqRel);
        match old {
            Some((old_addr, old_len)) => {
                self.index.load().replace(h, old_addr, addr);
                self.release_live(old_addr, old_len);
            }
            None => self.index_insert(&mut w, h, addr).map_err(|e| self.poison(e))?,
        }
        Ok(lsn)
    }

    /// Grows the index if one more entry would pass its load limit.
    fn make_room(&self, w: &mut Writer) -> Result<()> {
        let index = self.index.load();
        if index.len() + 1 > (index.capacity() as f64 * self.opts.max_index_load) as u64 {
            drop(index);
            self.grow_index(w)?;
        }
        Ok(())
    }

    /// Adds a new index entry, growing the index when it is full.
    fn index_insert(&self, w: &mut Writer, h: u64, addr: LogAddr) -> Result<()> {
        self.make_room(w)?;
        if self.index.load().insert(h, addr) {
            return Ok(());
        }
        self.grow_index(w)?;
        if self.index.load().insert(h, addr) {
            Ok(())
        } else {
            self.grow_index(w)?;
            if self.index.load().insert(h, addr) {
                Ok(())
            } else {
                Err(self.poison(StoreError::Corrupt { segment: 0, offset: 0, reason: "index cannot place an entry" }))
            }
        }
    }

    /// Rebuilds the index at a larger size. The index holds no hashes, so
    /// the entries are found again by scanning the log: a record is live iff
    /// the old index points at exactly its address.
    fn grow_index(&self, w: &mut Writer) -> Result<()> {
        w.active.flush_tail().map_err(|e| self.poison(StoreError::io("writing the log")(e)))?;
        let old = self.index.load_full();
        // A replay's estimate counts overwritten records too: trust it for
        // at most a few growth steps at once.
        let hinted = Index::buckets_for(self.grow_hint.load(Ordering::Relaxed), self.opts.max_index_load)
            .min(old.bucket_count() * 4);
        let mut buckets = ((old.bucket_count() as f64 * self.opts.index_growth).ceil() as usize).max(hinted);
        loop {
            let new = Index::with_buckets(buckets);
            let mut placed_all = true;
            let mut place = |h: u64, addr: LogAddr| {
                if placed_all && old.points_at(h, addr) && !new.insert(h, addr) {
                    placed_all = false;
                }
            };
            let damage = self.for_each_record(|addr, rec| {
                if !rec.is_tombstone() {
                    place(key_hash(rec.key), addr);
                }
            })?;
            // A live record damaged since it was written keeps its entry
            // when its key can still be read: a get then answers that the
            // record is corrupt, not that the key is missing.
            for (seg, at) in &damage {
                if let Some(key) = seg.damaged_key(*at) {
                    place(key_hash(&key), self.space.addr(seg.slot, *at));
                }
            }
            if placed_all && new.len() == old.len() {
                self.index.store(Arc::new(new));
                return Ok(());
            }
            if placed_all && !damage.is_empty() {
                // The rest point at records damaged past reading their key:
                // nothing can find those keys again.
                tracing::error!(
                    lost = old.len() - new.len(),
                    "growing the index: entries of records damaged beyond reading their keys are dropped"
                );
                self.index.store(Arc::new(new));
                return Ok(());
            }
            if placed_all {
                return Err(StoreError::Corrupt {
                    segment: 0,
                    offset: 0,
                    reason: "index entries point at no record in the log",
                });
            }
            buckets = (buckets as f64 * self.opts.index_growth).ceil() as usize;
        }
    }

    /// Visits every good record of every segment, oldest first, and returns
    /// where it found damage instead (logged): the segment and offset of
    /// each span stepped over, and of a bad tail (the scan of that segment
    /// ends there). Sealed segments were verified when written or
    /// recovered, so what is found here is damage since.
    fn for_each_record(&self, mut f: impl FnMut(LogAddr, RecordRef<'_>)) -> Result<Vec<(Arc<Segment>, u64)>> {
        let mut damage = Vec::new();
        for seg in self.segments.load().by_seq() {
            let mut scanner =
                Scanner::new(&*seg.file, segment::first_record_pos(), seg.flushed.load(Ordering::Acquire));
            let tail = loop {
                match scanner.next_record().map_err(StoreError::io("scanning the log"))? {
                    Ok(Some((pos, rec))) => f(self.space.addr(seg.slot, pos), rec),
                    Ok(None) | Err(segment::ScanEnd::Clean) => break None,
                    Err(segment::ScanEnd::Bad { at, reason }) => break Some(segment::Skipped { at, bytes: 0, reason }),
                }
            };
            for s in scanner.skipped().iter().chain(&tail) {
                tracing::error!(segment = seg.seq, offset = s.at, bytes = s.bytes, reason = s.reason, "damaged log");
                damage.push((seg.clone(), s.at));
            }
        }
        Ok(damage)
    }

    /// Frames a record into the active segment's tail, rolling to a new
    /// segment when it does not fit.
    fn append(&self, w: &mut Writer, key: &[u8], value: &[u8], flags: u8, version: u64) -> Result<(LogAddr, u64)> {
        let len = record_len(key.len(), value.len(), version);
        if w.active.end() + len > self.space.segment_bytes() {
            self.roll(w)?;
        }
        let seg = w.active.clone();
        let pos = seg.end();
        let flush = {
            let mut tail = seg.tail.lock();
            encode_record(&mut tail.buf, key, value, flags, version);
            tail.buf.len() >= TAIL_FLUSH_BYTES
        };
        seg.end.store(pos + len, Ordering::Release);
        self.max_version.fetch_max(version, Ordering::AcqRel);
        w.appended += len;
        self.since_checkpoint.fetch_add(len, Ordering::Relaxed);
        if flush {
            seg.flush_tail().map_err(|e| self.poison(StoreError::io("writing the log")(e)))?;
        }
        Ok((self.space.addr(seg.slot, pos), w.appended))
    }

    /// Seals the active segment and starts the next one.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        let old = w.active.clone();
        old.flush_tail().map_err(|e| self.poison(StoreError::io("writing the log")(e)))?;
        if self.opts.sync != SyncMode::Never {
            // Records acknowledged later by group commit may sit in this
            // segment; group commit only fsyncs the active one.
            self.sync_segment(&old)?;
        }
        let seg = self.create_segment(w)?;
        w.active = seg;
        Ok(())
    }

    fn sync_segment(&self, seg: &Segment) -> Result<()> {
        let _syncing = seg.sync_lock.lock();
        // An fsync that failed while we waited poisoned the store; a retry
        // that happened to succeed would not bring the lost pages back.
        self.check_poison()?;
        if seg.dirty.swap(false, Ordering::AcqRel) {
            seg.file.sync_data().map_err(|e| {
                seg.dirty.store(true, Ordering::Release);
                self.poison(StoreError::io("fsyncing the log")(e))
            })?;
        }
        Ok(())
    }

    /// Creates, durably, an empty segment in a free slot and publishes it.
    fn create_segment(&self, w: &mut Writer) -> Result<Arc<Segment>> {
        let slot = self.allocate_slot(w)?;
        let seq = w.next_seq;
        let name = segment_name(seq);
        let header = SegmentHeader { seq, slot, segment_shift: self.space.segment_shift };
        let io_err = |e| self.poison(StoreError::io("creating a segment")(e));
        let file = self.dir.create(&name).map_err(io_err)?;
        file.write_all_at(&header.encode(), 0).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        self.dir.sync().map_err(io_err)?;
        w.next_seq += 1;
        let seg = Arc::new(Segment::new(seq, slot, file, format::SEGMENT_HEADER_LEN));
        let table = self.segments.load().with(seg.clone());
        self.segments.store(Arc::new(table));
        Ok(seg)
    }

    /// The lowest slot that no segment, live or retired, occupies.
    fn allocate_slot(&self, w: &mut Writer) -> Result<u32> {
        // Retired segments whose last reader has gone give their slot back.
        w.retired.retain(|seg| Arc::strong_count(seg) > 1);
        let table = self.segments.load();
        let taken = |s: u32| table.get(s).is_some() || w.retired.iter().any(|r| r.slot == s);
        match (0..self.space.slots()).find(|&s| !taken(s)) {
            Some(s) => Ok(s),
            None => {
                let stats = self.stats();
                Err(StoreError::Full {
                    live_bytes: stats.log_bytes - stats.garbage_bytes,
                    segments: stats.segments as usize,
                })
            }
        }
    }

    /// Returns once everything up to `lsn` is durable, fsyncing on behalf
    /// of every writer waiting when this one gets the turn.
    fn wait_durable(&self, lsn: u64) -> Result<()> {
        if self.opts.sync != SyncMode::Always {
            return Ok(());
        }
        let mut st = self.commit.state.lock();
        loop {
            self.check_poison()?;
            if st.durable >= lsn {
                return Ok(());
            }
            if st.syncing {
                self.commit.done.wait(&mut st);
                continue;
            }
            st.syncing = true;
            drop(st);
            let result = self.sync_active();
            st = self.commit.state.lock();
            st.syncing = false;
            if let Ok(upto) = result {
                st.durable = st.durable.max(upto);
            }
            self.commit.done.notify_all();
            result?;
        }
    }

    /// Writes out the tail and fsyncs the active segment. Returns the
    /// append position now durable.
    fn sync_active(&self) -> Result<u64> {
        let (seg, upto) = {
            let w = self.writer.lock();
            w.active.flush_tail().map_err(|e| self.poison(StoreError::io("writing the log")(e)))?;
            (w.active.clone(), w.appended)
        };
        // Outside the writer lock: the next group keeps appending meanwhile.
        self.sync_segment(&seg)?;
        Ok(upto)
    }

    /// Makes every segment durable.
    fn sync_all(&self) -> Result<()> {
        let upto = self.sync_active()?;
        for seg in self.segments.load().by_seq() {
            self.sync_segment(&seg)?;
        }
        let mut st = self.commit.state.lock();
        st.durable = st.durable.max(upto);
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        let index = self.index.load();
        let mut s = StoreStats { live_keys: index.len(), index_bytes: index.memory_bytes(), ..StoreStats::default() };
        let mut live = 0;
        for seg in self.segments.load().by_seq() {
            s.log_bytes += seg.end();
            s.segments += 1;
            live += seg.live_bytes.load(Ordering::Acquire) + format::SEGMENT_HEADER_LEN;
        }
        s.garbage_bytes = s.log_bytes.saturating_sub(live);
        s
    }

    /// The maintenance thread: checkpoints and compaction.
    fn maintain(&self) {
        let (mut checkpoints, mut compactions) = (Streak::default(), Streak::default());
        while self.nap(Duration::from_millis(100)) {
            // Failures poison the store, and callers see them on their next
            // call; the log says so once, not every 100 ms.
            if self.since_checkpoint.load(Ordering::Relaxed) >= self.opts.checkpoint_every_bytes {
                checkpoints.note(self.checkpoint(), "index checkpoint");
            }
            if self.opts.compaction.enabled {
                compactions.note(self.compact(false).map(drop), "compaction");
            }
        }
    }

    /// The syncer thread of [`SyncMode::Interval`].
    fn sync_every_interval(&self) {
        let SyncMode::Interval(every) = self.opts.sync else {
            return;
        };
        let mut failing = Streak::default();
        while self.nap(every) {
            failing.note(self.sync_all(), "interval sync");
        }
    }
}

/// Whether one kind of background work is failing, so that a run of
/// failures is logged when it starts and when it ends, not every time.
#[derive(Debug, Default)]
struct Streak {
    /// Failures since the last success.
    failures: u64,
}

impl Streak {
    fn note(&mut self, outcome: Result<()>, what: &str) {
        match outcome {
            Err(e) => {
                if self.failures == 0 {
                    tracing::error!(error = %e, "store {what} failed");
                }
                self.failures += 1;
            }
            Ok(()) if self.failures > 0 => {
                tracing::info!(failures = self.failures, "store {what} works again");
                self.failures = 0;
            }
            Ok(()) => {}
        }
    }
}

/// The live record of a key, as a lookup found it.
#[derive(Debug)]
struct Found {
    addr: LogAddr,
    /// Set when the record's bytes do not check out.
    damage: Option<StoreError>,
}

/// What the record at an index candidate's address turned out to be.
enum Candidate {
    Mine,
    NotMine,
    /// The key's own record, damaged on flash.
    DamagedMine(StoreError),
}

/// Reads the record at `pos` of `seg` into `buf` and says whose it is.
/// A damaged record of another key is only a fragment match: it says
/// nothing about this key, so it does not fail this lookup.
fn read_candidate(seg: &Segment, pos: u64, key: &[u8], buf: &mut Vec<u8>) -> Result<Candidate> {
    let damaged = match seg.read_record(pos, buf) {
        Ok(()) => match RecordRef::decode(buf) {
            // The index never points at a tombstone; one here is a record
            // of a slot reused since this reader's snapshot.
            Ok(rec) if rec.key == key && !rec.is_tombstone() => return Ok(Candidate::Mine),
            Ok(_) => return Ok(Candidate::NotMine),
            Err(reason) => seg.corrupt(pos, reason),
        },
        Err(e @ StoreError::Corrupt { .. }) => e,
        Err(e) => return Err(e),
    };
    Ok(if record_key_is(buf, key) { Candidate::DamagedMine(damaged) } else { Candidate::NotMine })
}

/// Whether `buf` starts with a record header naming `key` (checked without
/// the checksum, to tell damage to this key's record from another's).
fn record_key_is(buf: &[u8], key: &[u8]) -> bool {
    let start = buf.get(10).map_or(format::RECORD_HEADER_LEN, |&flags| key_start(flags));
    buf.get(start..start + key.len()) == Some(key)
        && buf.get(8..10).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize) == Some(key.len())
}

/// Iterator over the live records of a key-hash range; see [`Store::scan`].
pub struct RangeScan<'a> {
    inner: &'a Inner,
    ranges: RangeSet,
    /// With `Some(v)`, records versioned `v` or below come out as their
    /// key hash alone ([`Scanned::Unchanged`]).
    after: Option<u64>,
    _gate: parking_lot::RwLockReadGuard<'a, ()>,
    /// Segments still to visit, oldest first.
    pending: std::collections::VecDeque<Arc<Segment>>,
    /// Highest segment seq visited or queued.
    last_seq: Option<u64>,
    current: Option<(Arc<Segment>, u64)>,
    buf: Vec<Scanned>,
    failed: bool,
}

/// One live record a [`ChangesSince`] scan found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scanned {
    /// Versioned above the scan's `after`: the whole record.
    Changed(Record),
    /// Versioned `after` or below: the hash of its key, and the version.
    Unchanged { hash: u64, version: u64 },
}

/// What [`Store::digest_ranges`] says of one range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeDigest {
    pub records: u64,
    pub digest: u64,
}

impl RangeDigest {
    fn add(&mut self, hash: u64, version: u64) {
        self.records += 1;
        // One record's share: a mix of both (a plain XOR of the two would
        // let versions and hashes cancel across records).
        let mut x = hash ^ version.rotate_left(32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.digest ^= x ^ (x >> 31);
    }
}

/// Which of a list of disjoint ranges holds a hash, by binary search.
struct RangeIndex {
    /// (start, end) on the line 0..2^64 with the range's index; a range
    /// wrapping zero is two spans.
    spans: Vec<(u128, u128, usize)>,
}

impl RangeIndex {
    fn new(ranges: &[KeyHashRange]) -> RangeIndex {
        let mut spans = Vec::new();
        for (i, r) in ranges.iter().enumerate() {
            let (s, e) = (r.start as u128, r.end as u128);
            if r.start < r.end {
                spans.push((s, e, i));
            } else {
                spans.push((s, 1 << 64, i));
                if e > 0 {
                    spans.push((0, e, i));
                }
            }
        }
        spans.sort_unstable();
        RangeIndex { spans }
    }

    fn of(&self, hash: u64) -> Option<usize> {
        let h = hash as u128;
        let at = self.spans.partition_point(|(s, _, _)| *s <= h).checked_sub(1)?;
        let (_, e, i) = self.spans[at];
        (h < e).then_some(i)
    }
}

/// The scan of [`Store::scan_ranges_after`].
#[derive(Debug)]
pub struct ChangesSince<'a>(RangeScan<'a>);

impl Iterator for ChangesSince<'_> {
    type Item = Result<Scanned>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_scanned()
    }
}

impl std::fmt::Debug for RangeScan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeScan").field("ranges", &self.ranges).finish_non_exhaustive()
    }
}

impl<'a> RangeScan<'a> {
    fn new(inner: &'a Inner, ranges: Vec<KeyHashRange>, after: Option<u64>) -> Self {
        let gate = inner.scan_gate.read_recursive();
        let pending: std::collections::VecDeque<_> = inner.segments.load().by_seq().into();
        let last_seq = pending.back().map(|s| s.seq);
        let ranges = RangeSet::new(&ranges);
        RangeScan {
            inner,
            ranges,
            after,
            _gate: gate,
            pending,
            last_seq,
            current: None,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Reads the next slice of the current segment into `buf`.
    fn refill(&mut self) -> Result<bool> {
        loop {
            if self.current.is_none() {
                match self.pending.pop_front() {
                    Some(seg) => self.current = Some((seg, segment::first_record_pos())),
                    None => {
                        // Pick up segments created since the scan began.
                        let newer: Vec<_> = self
                            .inner
                            .segments
                            .load()
                            .by_seq()
                            .into_iter()
                            .filter(|s| Some(s.seq) > self.last_seq)
                            .collect();
                        if newer.is_empty() {
                            return Ok(false);
                        }
                        self.last_seq = newer.last().map(|s| s.seq);
                        self.pending.extend(newer);
                        continue;
                    }
                }
            }
            let (seg, pos) = self.current.as_ref().unwrap();
            let (seg, pos) = (seg.clone(), *pos);
            if seg.flushed.load(Ordering::Acquire) < seg.end() {
                // Recent records still in memory: write them out to read them.
                let _w = self.inner.writer.lock();
                seg.flush_tail().map_err(|e| self.inner.poison(StoreError::io("writing the log")(e)))?;
            }
            let end = seg.flushed.load(Ordering::Acquire);
            let mut scanner = Scanner::new(&*seg.file, pos, end);
            let index = self.inner.index.load();
            let mut read = 0;
            let mut bad_tail = false;
            while read < 1 << 20 {
                match scanner.next_record().map_err(StoreError::io("scanning the log"))? {
                    Ok(Some((at, rec))) => {
                        read += rec.header.padded_len();
                        if rec.is_tombstone() {
                            continue;
                        }
                        let h = key_hash(rec.key);
                        if self.ranges.contains(h)
                            && index.lookup(h).as_slice().contains(&self.inner.space.addr(seg.slot, at))
                        {
                            self.buf.push(match self.after {
                                Some(after) if rec.version <= after => {
                                    Scanned::Unchanged { hash: h, version: rec.version }
                                }
                                _ => Scanned::Changed(Record {
                                    key: rec.key.to_vec(),
                                    value: Some(rec.value.to_vec()),
                                    version: rec.version,
                                }),
                            });
                        }
                    }
                    Ok(None) | Err(segment::ScanEnd::Clean) => break,
                    Err(segment::ScanEnd::Bad { at, reason }) => {
                        // Nothing good follows in this segment: on to the next.
                        tracing::error!(segment = seg.seq, offset = at, reason, "damaged log tail; scanning past it");
                        bad_tail = true;
                        break;
                    }
                }
            }
            for s in scanner.skipped() {
                tracing::error!(segment = seg.seq, offset = s.at, bytes = s.bytes, reason = s.reason, "damaged log");
            }
            let next = if bad_tail { end } else { scanner.position() };
            // At the end of what exists now; records appended to the active
            // segment later are the "may or may not be seen" kind.
            self.current = (next < end).then_some((seg, next));
            if !self.buf.is_empty() {
                self.buf.reverse();
                return Ok(true);
            }
        }
    }
}

impl RangeScan<'_> {
    fn next_scanned(&mut self) -> Option<Result<Scanned>> {
        if self.failed {
            return None;
        }
        if let Some(item) = self.buf.pop() {
            return Some(Ok(item));
        }
        match self.refill() {
            Ok(true) => self.buf.pop().map(Ok),
            Ok(false) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for RangeScan<'_> {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        // Without `after`, every record found is `Changed`.
        loop {
            return match self.next_scanned()? {
                Ok(Scanned::Changed(r)) => Some(Ok(r)),
                Ok(Scanned::Unchanged { .. }) => continue,
                Err(e) => Some(Err(e)),
            };
        }
    }
}
