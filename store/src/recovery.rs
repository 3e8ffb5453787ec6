//! Opening a store: find the segments, load the newest index checkpoint if it
//! can be trusted, roll forward over the log written after it, and cut a torn
//! or damaged tail at the last good record. Also writes checkpoints.
//!
//! Nothing in a file can make opening panic: every length and count read from
//! disk is checked before it is used.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};
use wimpy_keyspace::key_hash;

use super::error::{Result, StoreError};
use super::format::{self, AddrSpace, HeaderError, LogAddr, SEGMENT_HEADER_LEN, read_segment_header};
use super::index::{Index, SLOT_BYTES, SLOTS};
use super::io::{Dir, LogFile};
use super::options::Options;
use super::segment::{ScanEnd, Scanner, Segment, SegmentTable, parse_segment_name};
use super::{GroupCommit, Inner, Poison, Writer};

/// Name of the index checkpoint file.
pub(crate) const CHECKPOINT: &str = "index.ckpt";
const CHECKPOINT_TMP: &str = "index.ckpt.tmp";
const CHECKPOINT_MAGIC: [u8; 8] = *b"WIMPYIDX";
/// The checkpoint version this code writes: 2 adds the highest record
/// version to version 1's header. Both are read.
const CHECKPOINT_VERSION: u16 = 2;
/// Header bytes of a version 1 and a version 2 checkpoint.
const CHECKPOINT_HEADER_V1: usize = 48;
const CHECKPOINT_HEADER: usize = 56;
const CHECKPOINT_SEGMENT: usize = 32;

/// A place where the log stopped being records and was cut: a torn tail,
/// with no good record from `at` to the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Sequence number of the segment that was cut.
    pub segment: u64,
    /// Byte offset the segment was cut at.
    pub at: u64,
    /// Bytes removed.
    pub dropped_bytes: u64,
    /// What was wrong at `at`.
    pub reason: &'static str,
}

/// Bytes between good records that were no record (a record whose checksum
/// failed, say): stepped over, with every good record after them kept. The
/// record that was there is lost; if it was a key's newest, the key's
/// previous record (an older value, or a delete) counts again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Sequence number of the segment.
    pub segment: u64,
    /// Byte offset of the bad bytes.
    pub at: u64,
    /// How many bytes were stepped over.
    pub bytes: u64,
    /// What was wrong at `at`.
    pub reason: &'static str,
}

/// What opening found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Segment files in use after opening.
    pub segments: usize,
    /// Whether the index came from a checkpoint.
    pub checkpoint_used: bool,
    /// Why a checkpoint on disk was not used, if one was there.
    pub checkpoint_rejected: Option<String>,
    /// Records rolled forward over after the checkpoint (or all of them).
    pub replayed_records: u64,
    /// Bytes of log rolled forward over.
    pub replayed_bytes: u64,
    /// Torn tails that were cut.
    pub truncations: Vec<Truncation>,
    /// Damage in the middle of a segment that replay stepped over.
    pub damage: Vec<Damage>,
    /// Files set aside (renamed to `*.corrupt`) because their header was
    /// unreadable, and leftovers of an interrupted compaction that were removed.
    pub set_aside: Vec<String>,
    /// Keys live after recovery.
    pub live_keys: u64,
    /// Time spent opening.
    pub duration: Duration,
}

struct FoundSegment {
    name: String,
    header: format::SegmentHeader,
    file: Arc<dyn LogFile>,
    len: u64,
}

/// A checkpoint read from disk, before it is checked against the segments.
struct Checkpoint {
    replay_seq: u64,
    replay_pos: u64,
    /// The highest record version when it was taken (0 in version 1,
    /// whose stores hold no versioned records).
    max_version: u64,
    /// seq -> (slot, live bytes, end)
    segments: BTreeMap<u64, (u32, u64, u64)>,
    index: Index,
}

pub(crate) fn open(dir: Arc<dyn Dir>, opts: Options) -> Result<(Inner, RecoveryReport)> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let io = |op| StoreError::io(op);
    let names = dir.list().map_err(io("listing the store directory"))?;
    if names.iter().any(|n| n == CHECKPOINT_TMP) {
        dir.remove(CHECKPOINT_TMP).map_err(io("removing a half-written checkpoint"))?;
    }

    // 1. Segments with a readable header. Sequence numbers are never reused,
    // not even those of segments set aside earlier.
    let newest = names.iter().filter_map(|n| parse_segment_name(n)).max();
    let highest_seen =
        names.iter().filter_map(|n| parse_segment_name(n.strip_suffix(".corrupt").unwrap_or(n))).max().unwrap_or(0);
    let mut found: Vec<FoundSegment> = Vec::new();
    for name in names.iter().filter(|n| parse_segment_name(n).is_some()) {
        let file = dir.open(name).map_err(io("opening a segment"))?;
        let len = file.len().map_err(io("reading a segment's length"))?;
        let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
        let header = if len < SEGMENT_HEADER_LEN {
            Err(HeaderError::Damaged(format!("{len} bytes is too short for a segment header")))
        } else {
            file.read_exact_at(&mut head, 0).map_err(io("reading a segment header"))?;
            read_segment_header(&head).and_then(|h| {
                if Some(h.seq) == parse_segment_name(name) {
                    Ok(h)
                } else {
                    Err(HeaderError::Damaged("header sequence number differs from the file name".into()))
                }
            })
        };
        match header {
            Ok(header) => found.push(FoundSegment { name: name.clone(), header, file, len }),
            // Only the newest segment can lack its header because a crash
            // cut its creation short; it holds no acknowledged record. Keep
            // the bytes for inspection rather than deleting them.
            // (Its header is fsynced before any record is appended, so a
            // longer file with a bad header is damage, not a torn creation.)
            Err(HeaderError::Damaged(reason)) if parse_segment_name(name) == newest && len <= SEGMENT_HEADER_LEN => {
                let aside = format!("{name}.corrupt");
                dir.rename(name, &aside).map_err(io("setting aside a damaged segment"))?;
                report.set_aside.push(format!("{name}: {reason}"));
            }
            // Anywhere else, skipping the segment would bring back older
            // values of its keys: refuse, and say what to do.
            Err(HeaderError::Damaged(reason)) => {
                return Err(StoreError::Format {
                    path: dir.path().join(name),
                    reason: format!(
                        "{reason}; the segment holds records, so opening without it would lose them or resurrect older values. Restore it from a replica, or move it away to accept that loss"
                    ),
                });
            }
            Err(HeaderError::Unsupported(reason)) => {
                return Err(StoreError::Format { path: dir.path().join(name), reason });
            }
        }
    }
    found.sort_by_key(|s| s.header.seq);

    let shift = match found.first() {
        Some(s) => s.header.segment_shift,
        None => opts.segment_shift()?,
    };
    if let Some(s) = found.iter().find(|s| s.header.segment_shift != shift) {
        return Err(StoreError::Format {
            path: dir.path().join(&s.name),
            reason: format!("segment size 2^{} differs from the store's 2^{shift}", s.header.segment_shift),
        });
    }
    let space = AddrSpace { segment_shift: shift };

    // 2. The checkpoint, if it matches the segments.
    let mut checkpoint = None;
    if names.iter().any(|n| n == CHECKPOINT) {
        match read_checkpoint(&*dir).and_then(|c| check_checkpoint(c, &found, space)) {
            Ok(c) => checkpoint = Some(c),
            Err(reason) => report.checkpoint_rejected = Some(reason),
        }
    }
    if let Some(c) = &checkpoint {
        // Segments older than the replay point that the checkpoint does not
        // list are compaction victims whose removal a crash interrupted:
        // everything live in them was copied before the checkpoint.
        let mut kept = Vec::new();
        for s in found {
            if s.header.seq < c.replay_seq && !c.segments.contains_key(&s.header.seq) {
                dir.remove(&s.name).map_err(io("removing a compacted segment"))?;
                report.set_aside.push(format!("{}: compacted before the last checkpoint; removed", s.name));
            } else {
                kept.push(s);
            }
        }
        found = kept;
    }
    let mut slots = HashMap::new();
    for s in &found {
        if let Some(other) = slots.insert(s.header.slot, &s.name) {
            return Err(StoreError::Format {
                path: dir.path().join(&s.name),
                reason: format!("slot {} is also claimed by {other}", s.header.slot),
            });
        }
    }

    // 3. Segment objects, with the lengths and live bytes the checkpoint knew.
    let (replay_seq, replay_pos) = checkpoint.as_ref().map_or((0, 0), |c| (c.replay_seq, c.replay_pos));
    let mut table = SegmentTable::default();
    let mut segs = Vec::new();
    for s in &found {
        let known = checkpoint.as_ref().and_then(|c| c.segments.get(&s.header.seq));
        let end = if s.header.seq < replay_seq { known.map_or(s.len, |k| k.2) } else { s.len };
        let seg = Arc::new(Segment::new(s.header.seq, s.header.slot, s.file.clone(), end));
        if let Some(k) = known {
            seg.live_bytes.store(k.1, Ordering::Relaxed);
        }
        table = table.with(seg.clone());
        segs.push(seg);
    }
    report.checkpoint_used = checkpoint.is_some();
    let max_version = checkpoint.as_ref().map_or(0, |c| c.max_version);
    let index = match checkpoint {
        Some(c) => c.index,
        None => Index::with_buckets(Index::buckets_for(opts.expected_keys, opts.max_index_load)),
    };

    let placeholder = match segs.last() {
        Some(s) => s.clone(),
        None => Arc::new(Segment::new(0, 0, Arc::new(NoFile), SEGMENT_HEADER_LEN)),
    };
    let inner = Inner {
        dir: dir.clone(),
        space,
        index: ArcSwap::from_pointee(index),
        segments: ArcSwap::from_pointee(table),
        writer: Mutex::new(Writer {
            active: placeholder,
            next_seq: highest_seen + 1,
            retired: Vec::new(),
            appended: 0,
            scratch: Vec::new(),
        }),
        commit: GroupCommit::default(),
        poison: Poison::default(),
        since_checkpoint: AtomicU64::new(0),
        max_version: AtomicU64::new(max_version),
        scan_gate: parking_lot::RwLock::new(()),
        grow_hint: AtomicU64::new(0),
        maintenance: Mutex::new(()),
        wake: (Mutex::new(()), Condvar::new()),
        closed: AtomicBool::new(false),
        opts,
    };

    // 4. Roll forward over everything after the replay point. Until a
    // record has been verified, no other code may read it (an index rebuild
    // during replay scans segments up to their end), so each segment's end
    // starts at its replay point and advances as records check out.
    let mut to_replay = Vec::new();
    for seg in &segs {
        if seg.seq < replay_seq {
            continue;
        }
        let from = if seg.seq == replay_seq { replay_pos.max(SEGMENT_HEADER_LEN) } else { SEGMENT_HEADER_LEN };
        // Bytes past the segment size cannot be addressed: never records.
        to_replay.push((seg.clone(), from, seg.end().min(space.segment_bytes())));
        seg.set_end(from);
    }
    let replay_total: u64 = to_replay.iter().map(|(_, from, end)| end.saturating_sub(*from)).sum();
    for (seg, from, end) in to_replay {
        let file_len = seg.file.len().map_err(io("reading a segment's length"))?;
        // What was replayed may sit in the page cache only (an earlier process
        // wrote it and died before its fsync); a checkpoint must not count
        // on it until it is synced.
        seg.dirty.store(true, Ordering::Release);
        let mut stopped = replay_segment(&inner, &seg, from, end, replay_total, &mut report)?;
        if stopped == ScanEnd::Clean && file_len > end {
            stopped = ScanEnd::Bad { at: end, reason: "file is longer than the store's segment size" };
        }
        if let ScanEnd::Bad { at, reason } = stopped {
            seg.file.set_len(at).map_err(io("cutting a torn log tail"))?;
            seg.file.sync_data().map_err(io("cutting a torn log tail"))?;
            seg.set_end(at);
            report.truncations.push(Truncation { segment: seg.seq, at, dropped_bytes: file_len - at, reason });
        }
    }

    // 5. Append to the newest segment if there is one, else start one.
    {
        let mut w = inner.writer.lock();
        if segs.is_empty() {
            let seg = inner.create_segment(&mut w)?;
            w.active = seg;
        }
    }
    inner.since_checkpoint.store(report.replayed_bytes, Ordering::Relaxed);
    inner.grow_hint.store(0, Ordering::Relaxed);
    report.segments = inner.segments.load().by_seq().len();
    report.live_keys = inner.index.load().len();
    report.duration = started.elapsed();
    Ok((inner, report))
}

/// A replayed record, on its way into the index.
struct Replayed {
    pos: u64,
    key: Vec<u8>,
    /// `None`: a tombstone.
    value_len: Option<usize>,
    padded_len: u64,
}

/// Applies the records of `seg` in `[from, end)` to the index.
fn replay_segment(
    inner: &Inner,
    seg: &Arc<Segment>,
    from: u64,
    end: u64,
    replay_total: u64,
    report: &mut RecoveryReport,
) -> Result<ScanEnd> {
    let mut scanner = Scanner::new(&*seg.file, from, end);
    // Keys are copied out of the scanner's buffer so the index can be
    // updated (which may read other records) while scanning continues.
    let mut batch: Vec<Replayed> = Vec::new();
    let result = loop {
        match scanner.next_record().map_err(StoreError::io("reading the log"))? {
            Ok(Some((pos, rec))) => {
                report.replayed_records += 1;
                inner.max_version.fetch_max(rec.version, Ordering::AcqRel);
                report.replayed_bytes += rec.header.padded_len();
                batch.push(Replayed {
                    pos,
                    key: rec.key.to_vec(),
                    value_len: (!rec.is_tombstone()).then_some(rec.value.len()),
                    padded_len: rec.header.padded_len(),
                });
                if batch.len() >= 4096 {
                    // Size the index for the whole replay: records seen so far,
                    // scaled by the share of the log they took.
                    let estimate = report.replayed_records as f64 * replay_total as f64 / report.replayed_bytes as f64;
                    inner.grow_hint.fetch_max(estimate as u64 + inner.index.load().len(), Ordering::Relaxed);
                    seg.set_end(scanner.position());
                    apply_batch(inner, seg, &mut batch)?;
                }
            }
            Ok(None) => break ScanEnd::Clean,
            Err(bad) => break bad,
        }
    };
    report.damage.extend(scanner.skipped().iter().map(|s| Damage {
        segment: seg.seq,
        at: s.at,
        bytes: s.bytes,
        reason: s.reason,
    }));
    seg.set_end(scanner.position());
    apply_batch(inner, seg, &mut batch)?;
    Ok(result)
}

fn apply_batch(inner: &Inner, seg: &Arc<Segment>, batch: &mut Vec<Replayed>) -> Result<()> {
    let mut w = inner.writer.lock();
    for Replayed { pos, key, value_len, padded_len } in batch.drain(..) {
        let addr = inner.space.addr(seg.slot, pos);
        let h = key_hash(&key);
        let old = inner.find_live_locked(&mut w, h, &key)?;
        if let Some((old_addr, old_len)) = old {
            inner.release_live(old_addr, old_len);
        }
        match value_len {
            None => {
                if let Some((old_addr, _)) = old {
                    inner.index.load().remove(h, old_addr);
                }
            }
            Some(_) => {
                seg.live_bytes.fetch_add(padded_len, Ordering::Relaxed);
                match old {
                    Some((old_addr, _)) => {
                        inner.index.load().replace(h, old_addr, addr);
                    }
                    None => inner.index_insert(&mut w, h, addr)?,
                }
            }
        }
    }
    Ok(())
}

fn read_checkpoint(dir: &dyn Dir) -> std::result::Result<Checkpoint, String> {
    let file = dir.open(CHECKPOINT).map_err(|e| format!("cannot open: {e}"))?;
    let len = file.len().map_err(|e| format!("cannot stat: {e}"))?;
    if len < (CHECKPOINT_HEADER_V1 + 4) as u64 {
        return Err(format!("{len} bytes is not a checkpoint"));
    }
    // Check the size the header promises before allocating for it.
    let mut head = [0u8; CHECKPOINT_HEADER_V1];
    file.read_exact_at(&mut head, 0).map_err(|e| format!("cannot read: {e}"))?;
    let version = u16::from_le_bytes(head[8..10].try_into().unwrap());
    let header_len = match version {
        1 => CHECKPOINT_HEADER_V1,
        CHECKPOINT_VERSION => CHECKPOINT_HEADER,
        _ => return Err(format!("checkpoint version {version}; this build reads versions 1 to {CHECKPOINT_VERSION}")),
    };
    let promised = (CHECKPOINT_SEGMENT as u64)
        .checked_mul(u64::from(u32::from_le_bytes(head[40..44].try_into().unwrap())))
        .and_then(|segs| {
            u64::from_le_bytes(head[16..24].try_into().unwrap())
                .checked_mul((SLOTS * SLOT_BYTES) as u64)
                .and_then(|idx| idx.checked_add(segs))
        })
        .and_then(|body| body.checked_add(header_len as u64 + 4));
    if promised != Some(len) {
        return Err("its header does not match its size".into());
    }
    let mut b = vec![0u8; len as usize];
    file.read_exact_at(&mut b, 0).map_err(|e| format!("cannot read: {e}"))?;
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err("checksum mismatch".into());
    }
    if body[0..8] != CHECKPOINT_MAGIC {
        return Err("bad magic".into());
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
    let buckets = u64_at(16);
    let replay_seq = u64_at(24);
    let replay_pos = u64_at(32);
    let count = u32::from_le_bytes(body[40..44].try_into().unwrap()) as usize;
    let max_version = if version == 1 { 0 } else { u64_at(48) };
    let seg_bytes = count.checked_mul(CHECKPOINT_SEGMENT).ok_or("segment count overflows")?;
    let idx_bytes = usize::try_from(buckets)
        .ok()
        .and_then(|b| b.checked_mul(SLOTS * SLOT_BYTES))
        .ok_or("bucket count overflows")?;
    if header_len.checked_add(seg_bytes).and_then(|x| x.checked_add(idx_bytes)) != Some(body.len()) {
        return Err("lengths inside do not add up to the file size".into());
    }
    let mut segments = BTreeMap::new();
    for i in 0..count {
        let at = header_len + i * CHECKPOINT_SEGMENT;
        let slot = u32::from_le_bytes(body[at..at + 4].try_into().unwrap());
        if segments.insert(u64_at(at + 8), (slot, u64_at(at + 16), u64_at(at + 24))).is_some() {
            return Err("a segment is listed twice".into());
        }
    }
    let index =
        Index::read_raw(buckets as usize, &body[header_len + seg_bytes..]).ok_or("index table does not parse")?;
    Ok(Checkpoint { replay_seq, replay_pos, max_version, segments, index })
}

/// Accepts a checkpoint only if every segment it names is on disk, in the
/// same slot, at least as long as it was, and every index entry points into
/// one of them.
fn check_checkpoint(
    c: Checkpoint,
    found: &[FoundSegment],
    space: AddrSpace,
) -> std::result::Result<Checkpoint, String> {
    let by_seq: HashMap<u64, &FoundSegment> = found.iter().map(|s| (s.header.seq, s)).collect();
    for (seq, (slot, live, end)) in &c.segments {
        let Some(s) = by_seq.get(seq) else {
            return Err(format!("segment {seq:016x} it names is missing"));
        };
        if s.header.slot != *slot || s.len < *end || *live > *end || *end < SEGMENT_HEADER_LEN {
            return Err(format!("segment {seq:016x} does not match it"));
        }
    }
    if !c.segments.contains_key(&c.replay_seq) && by_seq.contains_key(&c.replay_seq) {
        return Err("replay segment is not listed".into());
    }
    if let Some(&(_, _, end)) = c.segments.get(&c.replay_seq)
        && c.replay_pos > end
    {
        return Err("replay position lies past its segment's end".into());
    }
    if c.segments.values().any(|&(_, _, end)| end > space.segment_bytes()) {
        return Err("a segment end lies past the segment size".into());
    }
    if !c.replay_pos.is_multiple_of(format::RECORD_ALIGN) {
        return Err("replay position is not record-aligned".into());
    }
    // End of each listed slot's segment, 0 for slots not listed: a plain
    // table, since this runs once per index entry.
    let top = c.segments.values().map(|&(slot, _, _)| slot as usize + 1).max().unwrap_or(0);
    let mut ends = vec![0u64; top];
    for &(slot, _, end) in c.segments.values() {
        ends[slot as usize] = end;
    }
    let mut bad = false;
    c.index.for_each_entry(|_, addr: LogAddr| {
        let (slot, pos) = space.split(addr);
        let end = ends.get(slot as usize).copied().unwrap_or(0);
        bad |= pos < SEGMENT_HEADER_LEN || pos >= end;
    });
    if bad {
        return Err("index entries point outside the segments it names".into());
    }
    Ok(c)
}

impl Inner {
    /// Writes an index checkpoint: the table, the segments it points into
    /// and the log position from which the next open must roll forward.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let _m = self.maintenance.lock();
        self.checkpoint_locked()
    }

    /// [`Inner::checkpoint`] for callers already holding the maintenance lock.
    pub(crate) fn checkpoint_locked(&self) -> Result<()> {
        self.check_poison()?;
        let (mut bytes, segs) = {
            let w = self.writer.lock();
            w.active.flush_tail().map_err(|e| self.poison(StoreError::io("writing the log")(e)))?;
            let segs = self.segments.load().by_seq();
            let index = self.index.load();
            let mut b = Vec::with_capacity(
                CHECKPOINT_HEADER + segs.len() * CHECKPOINT_SEGMENT + index.memory_bytes() as usize + 4,
            );
            b.extend_from_slice(&CHECKPOINT_MAGIC);
            b.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
            b.extend_from_slice(&[0u8; 6]);
            b.extend_from_slice(&(index.bucket_count() as u64).to_le_bytes());
            b.extend_from_slice(&w.active.seq.to_le_bytes());
            b.extend_from_slice(&w.active.end().to_le_bytes());
            b.extend_from_slice(&(segs.len() as u32).to_le_bytes());
            b.extend_from_slice(&[0u8; 4]);
            b.extend_from_slice(&self.max_version.load(Ordering::Acquire).to_le_bytes());
            for s in &segs {
                b.extend_from_slice(&s.slot.to_le_bytes());
                b.extend_from_slice(&[0u8; 4]);
                b.extend_from_slice(&s.seq.to_le_bytes());
                b.extend_from_slice(&s.live_bytes.load(Ordering::Acquire).to_le_bytes());
                b.extend_from_slice(&s.end().to_le_bytes());
            }
            index.write_raw(&mut b);
            self.since_checkpoint.store(0, Ordering::Relaxed);
            (b, segs)
        };
        // The checkpoint may only name log bytes that are on flash.
        for s in &segs {
            self.sync_segment(s)?;
        }
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let fail = |e| self.poison(StoreError::io("writing the index checkpoint")(e));
        // A temporary file left by a checkpoint cut short is replaced.
        match self.dir.remove(CHECKPOINT_TMP) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
            _ => {}
        }
        let file = self.dir.create(CHECKPOINT_TMP).map_err(fail)?;
        file.write_all_at(&bytes, 0).map_err(fail)?;
        file.sync_data().map_err(fail)?;
        self.dir.rename(CHECKPOINT_TMP, CHECKPOINT).map_err(fail)?;
        self.dir.sync().map_err(fail)?;
        Ok(())
    }
}

/// Stands in for the active segment of an empty store until the first
/// segment is created during open; never read or written.
#[derive(Debug)]
struct NoFile;

impl LogFile for NoFile {
    fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<usize> {
        Ok(0)
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("no segment yet"))
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(0)
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Ok(())
    }
}
