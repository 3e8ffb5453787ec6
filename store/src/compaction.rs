//! Compaction: copies the live records of segments that are mostly garbage
//! to the head of the log and deletes those segments.
//!
//! Copies go to the head, through the same writer lock as puts, so a copy is
//! always the newest record of its key: a put that raced it either came
//! first (and the old record is no longer live, so it is not copied) or
//! comes after (and is newer than the copy). Recovery's "last record wins"
//! stays true without any other ordering rule.
//!
//! Order of the steps, for crash safety: copy, fsync, drop the victims from
//! the segment table, checkpoint (which therefore never names a victim),
//! delete victim files oldest first, and only then free their slots.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wimpy_keyspace::key_hash;

use super::Inner;
use super::error::{Result, StoreError};
use super::format::{FLAG_TOMBSTONE, SEGMENT_HEADER_LEN, record_len};
use super::segment::{ScanEnd, Scanner, Segment, segment_name};

/// At most this many segments are rewritten per round, so one round's
/// copies stay bounded and the background thread checks in often.
const MAX_VICTIMS_PER_ROUND: usize = 8;
/// Records are moved in batches of about this many bytes per writer-lock hold.
const BATCH_BYTES: u64 = 256 << 10;
/// How long a compaction round waits for running range scans to finish.
const SCAN_WAIT: Duration = Duration::from_millis(200);

/// What a compaction round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten and deleted.
    pub segments_compacted: usize,
    /// Bytes of segment files deleted.
    pub bytes_freed: u64,
    /// Bytes of live records copied to the head of the log.
    pub bytes_copied: u64,
    /// Live records copied.
    pub records_copied: u64,
    /// Tombstones dropped because no older record of their key survives.
    pub tombstones_dropped: u64,
    /// Segments found damaged while being copied; they stay on disk with
    /// what could not be moved, and are not compacted again.
    pub segments_damaged: usize,
}

impl Inner {
    /// One compaction round. Unless `forced`, runs only when the store's
    /// garbage ratio passes the configured threshold, and at the configured
    /// rate.
    pub(crate) fn compact(&self, forced: bool) -> Result<CompactionReport> {
        let _m = self.maintenance.lock();
        self.check_poison()?;
        let mut report = CompactionReport::default();
        let stats = self.stats();
        let opts = &self.opts.compaction;
        if !forced
            && (stats.log_bytes == 0 || (stats.garbage_bytes as f64) < opts.garbage_ratio * stats.log_bytes as f64)
        {
            return Ok(report);
        }
        let active_seq = self.writer.lock().active.seq;
        let all = self.segments.load().by_seq();
        let garbage = |s: &Segment| {
            let end = s.end();
            end.saturating_sub(SEGMENT_HEADER_LEN + s.live_bytes.load(Ordering::Acquire))
        };
        let mut victims: Vec<Arc<Segment>> = all
            .iter()
            .filter(|s| s.seq < active_seq && !s.damaged.load(Ordering::Acquire))
            .filter(|s| {
                let g = garbage(s);
                if forced { g > 0 } else { g as f64 >= opts.min_segment_garbage * s.end() as f64 }
            })
            .cloned()
            .collect();
        victims.sort_by_key(|s| std::cmp::Reverse(garbage(s)));
        victims.truncate(MAX_VICTIMS_PER_ROUND);
        if victims.is_empty() {
            return Ok(report);
        }
        victims.sort_by_key(|s| s.seq);
        // A tombstone must be kept while an older segment outside this
        // round might still hold a value of its key.
        let oldest_survivor =
            all.iter().filter(|s| !victims.iter().any(|v| v.seq == s.seq)).map(|s| s.seq).min().unwrap_or(u64::MAX);

        let started = Instant::now();
        let mut read = 0u64;
        let mut moved = Vec::new();
        for v in victims {
            // Range scans must not miss a record that moves behind them, so
            // records move only while no scan runs. A scan that outlasts the
            // wait ends this round early instead of stalling (or, from the
            // scan's own thread, deadlocking) the store.
            let Some(gate) = self.scan_gate.try_write_for(SCAN_WAIT) else {
                break;
            };
            read += v.end();
            match self.move_live_records(&v, oldest_survivor, &mut report) {
                Ok(()) => moved.push(v),
                // Damaged on flash: what it still holds stays where it is;
                // later rounds leave it alone rather than copy it forever.
                Err(StoreError::Corrupt { .. }) => {
                    v.damaged.store(true, Ordering::Release);
                    report.segments_damaged += 1;
                }
                Err(e) => return Err(e),
            }
            drop(gate);
            if !forced && let Some(rate) = opts.bytes_per_second {
                let due = Duration::from_secs_f64(read as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let victims = moved;
        if victims.is_empty() {
            return Ok(report);
        }

        self.sync_all()?;
        let gone: Vec<u32> = victims.iter().map(|v| v.slot).collect();
        {
            let _w = self.writer.lock();
            let table = self.segments.load().without(&gone);
            self.segments.store(Arc::new(table));
        }
        self.checkpoint_locked()?;
        for v in &victims {
            self.dir
                .remove(&segment_name(v.seq))
                .map_err(|e| self.poison(StoreError::io("deleting a compacted segment")(e)))?;
            report.bytes_freed += v.end();
        }
        self.dir.sync().map_err(|e| self.poison(StoreError::io("deleting a compacted segment")(e)))?;
        report.segments_compacted = victims.len();
        self.writer.lock().retired.extend(victims);
        Ok(report)
    }

    /// Copies the live records (and needed tombstones) of `v` to the head.
    fn move_live_records(&self, v: &Arc<Segment>, oldest_survivor: u64, report: &mut CompactionReport) -> Result<()> {
        let mut scanner = Scanner::new(&*v.file, SEGMENT_HEADER_LEN, v.end());
        let mut batch: Vec<Moved> = Vec::new();
        let mut batch_bytes = 0;
        loop {
            let next = scanner.next_record().map_err(StoreError::io("reading a segment to compact"))?;
            let done = match next {
                Ok(Some((pos, rec))) => {
                    batch_bytes += rec.header.padded_len();
                    batch.push(Moved {
                        pos,
                        key: rec.key.to_vec(),
                        value: rec.value.to_vec(),
                        version: rec.version,
                        tombstone: rec.is_tombstone(),
                    });
                    false
                }
                Ok(None) | Err(ScanEnd::Clean) => true,
                Err(ScanEnd::Bad { at, reason }) => return Err(v.corrupt(at, reason)),
            };
            // Good records behind damage are moved too, but a segment with
            // damage stays on disk with it (a caller that finds the error
            // marks it damaged): what the damaged records were is unknown,
            // so whether the index still points at them is too.
            if done && let Some(first) = scanner.skipped().first() {
                if !batch.is_empty() {
                    self.move_batch(v, oldest_survivor, &mut batch, report)?;
                }
                return Err(v.corrupt(first.at, first.reason));
            }
            if batch_bytes >= BATCH_BYTES || (done && !batch.is_empty()) {
                self.move_batch(v, oldest_survivor, &mut batch, report)?;
                batch_bytes = 0;
            }
            if done {
                return Ok(());
            }
        }
    }

    fn move_batch(
        &self,
        v: &Arc<Segment>,
        oldest_survivor: u64,
        batch: &mut Vec<Moved>,
        report: &mut CompactionReport,
    ) -> Result<()> {
        let mut w = self.writer.lock();
        self.check_poison()?;
        for Moved { pos, key, value, version, tombstone } in batch.drain(..) {
            let addr = self.space.addr(v.slot, pos);
            let h = key_hash(&key);
            let len = record_len(key.len(), value.len(), version);
            if tombstone {
                let needed = oldest_survivor < v.seq && self.find_live_locked(&mut w, h, &key)?.is_none();
                if needed {
                    let (new, _) = self.append(&mut w, &key, &[], FLAG_TOMBSTONE, version)?;
                    // Kept tombstones count as live so they do not make
                    // their new segment look like garbage forever.
                    if let Some(seg) = self.segment_of(new) {
                        seg.live_bytes.fetch_add(len, Ordering::AcqRel);
                    }
                    report.records_copied += 1;
                    report.bytes_copied += len;
                } else {
                    report.tombstones_dropped += 1;
                }
                continue;
            }
            let index = self.index.load();
            if !index.points_at(h, addr) {
                continue;
            }
            drop(index);
            let (new, _) = self.append(&mut w, &key, &value, 0, version)?;
            // The append may have grown nothing (only puts grow the index),
            // so the entry is still where points_at found it.
            self.index.load().replace(h, addr, new);
            if let Some(seg) = self.segment_of(new) {
                seg.live_bytes.fetch_add(len, Ordering::AcqRel);
            }
            self.release_live(addr, len);
            report.records_copied += 1;
            report.bytes_copied += len;
        }
        Ok(())
    }
}

/// A record read from a segment being compacted, on its way to the active
/// segment (or to being dropped).
struct Moved {
    pos: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    version: u64,
    tombstone: bool,
}
