//! Log segments: the files records are appended to, the table that maps
//! address slots to them, and a sequential scanner over their records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::error::{Result, StoreError};
use super::format::{RECORD_ALIGN, RECORD_HEADER_LEN, RecordHeader, RecordRef, SEGMENT_HEADER_LEN};
use super::io::LogFile;

/// File name of the segment with sequence number `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.log")
}

/// The sequence number a segment file name carries, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".log")?;
    // Lowercase only: the store names and deletes files by segment_name().
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// One segment file.
#[derive(Debug)]
pub struct Segment {
    /// Position in the log: records in higher-seq segments are newer.
    pub seq: u64,
    /// Address-space slot.
    pub slot: u32,
    pub file: Arc<dyn LogFile>,
    /// Bytes of the file that hold records (header included) and that a
    /// reader may fetch with a positioned read. Below `end` while recent
    /// records still sit in `tail`.
    pub flushed: AtomicU64,
    /// End of the last record appended, flushed or not.
    pub end: AtomicU64,
    /// Records appended but not yet written to the file. Only the active
    /// segment's is ever non-empty.
    pub tail: Mutex<Tail>,
    /// Bytes of records in this segment that a get can still reach, plus
    /// tombstones that compaction had to keep.
    pub live_bytes: AtomicU64,
    /// Written since the last fsync.
    pub dirty: AtomicBool,
    /// Held across clearing `dirty` and the fsync it stands for, so a second
    /// caller waits for an fsync in progress instead of taking a clear flag
    /// for a finished one.
    pub sync_lock: Mutex<()>,
    /// Compaction found a record here that does not check out.
    pub damaged: AtomicBool,
}

/// Appended records not yet in the file.
#[derive(Debug, Default)]
pub struct Tail {
    /// File offset of `buf[0]`; equals the segment's `flushed`.
    pub start: u64,
    pub buf: Vec<u8>,
}

impl Segment {
    pub fn new(seq: u64, slot: u32, file: Arc<dyn LogFile>, end: u64) -> Segment {
        Segment {
            seq,
            slot,
            file,
            flushed: AtomicU64::new(end),
            end: AtomicU64::new(end),
            tail: Mutex::new(Tail { start: end, buf: Vec::new() }),
            live_bytes: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            sync_lock: Mutex::new(()),
            damaged: AtomicBool::new(false),
        }
    }

    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Declares everything before `pos` written and nothing after: used by
    /// recovery, which trusts a segment only as far as it has verified it.
    pub fn set_end(&self, pos: u64) {
        let mut tail = self.tail.lock();
        debug_assert!(tail.buf.is_empty());
        tail.start = pos;
        self.flushed.store(pos, Ordering::Release);
        self.end.store(pos, Ordering::Release);
    }

    /// Writes the tail to the file. The caller poisons the store on error.
    pub fn flush_tail(&self) -> std::io::Result<()> {
        let mut tail = self.tail.lock();
        if tail.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&tail.buf, tail.start)?;
        tail.start += tail.buf.len() as u64;
        tail.buf.clear();
        self.dirty.store(true, Ordering::Release);
        self.flushed.store(tail.start, Ordering::Release);
        Ok(())
    }

    /// Reads the record at `pos` and verifies it; `Ok(None)` only if the
    /// bytes there are not a record (a stale address after a reuse race is
    /// caught by the caller comparing keys).
    pub fn read_record(&self, pos: u64, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        if pos >= self.flushed.load(Ordering::Acquire) {
            let tail = self.tail.lock();
            if pos >= tail.start {
                let at = (pos - tail.start) as usize;
                let header = RecordHeader::parse(tail.buf.get(at..).unwrap_or(&[]))
                    .map_err(|reason| self.corrupt(pos, reason))?;
                let body = tail
                    .buf
                    .get(at..at + header.body_end())
                    .ok_or_else(|| self.corrupt(pos, "record runs past the log end"))?;
                out.extend_from_slice(body);
                return Ok(());
            }
            // Flushed in the meantime: read it from the file.
        }
        // One positioned read covers the header and a typical small record;
        // a larger record costs a second read for the rest.
        const FIRST_READ: usize = 512;
        // Records below `flushed` lie wholly in the file; reading past it
        // would run into bytes still in the tail.
        let end = self.flushed.load(Ordering::Acquire);
        let want = FIRST_READ.min(end.saturating_sub(pos) as usize);
        if want < RECORD_HEADER_LEN {
            return Err(self.corrupt(pos, "address past the end of the segment"));
        }
        out.resize(want, 0);
        self.file.read_exact_at(out, pos).map_err(StoreError::io("reading a record"))?;
        let header = RecordHeader::parse(out).map_err(|reason| self.corrupt(pos, reason))?;
        let body = header.body_end();
        if pos + body as u64 > end {
            return Err(self.corrupt(pos, "record runs past the segment end"));
        }
        if body > out.len() {
            let have = out.len();
            out.resize(body, 0);
            self.file.read_exact_at(&mut out[have..], pos + have as u64).map_err(StoreError::io("reading a record"))?;
        } else {
            out.truncate(body);
        }
        Ok(())
    }

    /// The key of the damaged record at `pos`, if its header and key still
    /// read as such (the checksum aside): damage to a value leaves them.
    pub fn damaged_key(&self, pos: u64) -> Option<Vec<u8>> {
        let end = self.flushed.load(Ordering::Acquire);
        let mut header = [0u8; RECORD_HEADER_LEN];
        if pos + RECORD_HEADER_LEN as u64 > end || self.file.read_exact_at(&mut header, pos).is_err() {
            return None;
        }
        let header = RecordHeader::parse(&header).ok()?;
        let key_at = pos + header.key_start() as u64;
        if key_at + u64::from(header.key_len) > end {
            return None;
        }
        let mut key = vec![0u8; header.key_len as usize];
        self.file.read_exact_at(&mut key, key_at).ok()?;
        Some(key)
    }

    pub fn corrupt(&self, offset: u64, reason: &'static str) -> StoreError {
        StoreError::Corrupt { segment: self.seq, offset, reason }
    }
}

/// Segments by slot. Readers take a snapshot of the table before they read
/// the index, and a freed slot is reused only after no snapshot that still
/// maps it to its old segment is held, so an address read from the index
/// never resolves to the wrong file.
#[derive(Debug, Default, Clone)]
pub struct SegmentTable {
    by_slot: Vec<Option<Arc<Segment>>>,
}

impl SegmentTable {
    pub fn get(&self, slot: u32) -> Option<&Arc<Segment>> {
        self.by_slot.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn with(&self, seg: Arc<Segment>) -> SegmentTable {
        let mut t = self.clone();
        let slot = seg.slot as usize;
        if t.by_slot.len() <= slot {
            t.by_slot.resize(slot + 1, None);
        }
        t.by_slot[slot] = Some(seg);
        t
    }

    pub fn without(&self, slots: &[u32]) -> SegmentTable {
        let mut t = self.clone();
        for &s in slots {
            if let Some(e) = t.by_slot.get_mut(s as usize) {
                *e = None;
            }
        }
        while matches!(t.by_slot.last(), Some(None)) {
            t.by_slot.pop();
        }
        t
    }

    /// All segments, oldest first.
    pub fn by_seq(&self) -> Vec<Arc<Segment>> {
        let mut v: Vec<_> = self.by_slot.iter().flatten().cloned().collect();
        v.sort_by_key(|s| s.seq);
        v
    }
}

/// Outcome of scanning a segment up to its end or its bad tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte up to the end was good records (or damage skipped).
    Clean,
    /// From `at` to the end no record checks out: a torn tail (or damage
    /// there, which looks the same).
    Bad { at: u64, reason: &'static str },
}

/// Bytes between two good records that were not a record: damage the
/// scanner stepped over to the next record that checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Where the bad bytes start (where a record should have been).
    pub at: u64,
    /// How many bytes up to the next good record.
    pub bytes: u64,
    /// What was wrong at `at`.
    pub reason: &'static str,
}

/// Reads a segment's records front to back in large chunks.
///
/// A record that does not check out (its checksum fails, or its header is
/// no header) is damage when a good record follows it, and the scanner
/// resynchronises there: it records what it stepped over ([`Scanner::skipped`])
/// and goes on. Records start on 8-byte boundaries, so after damage it tries
/// each boundary in turn and resumes at the first good record. (Not where
/// the bad record's header says the next starts: the damage may be in that
/// header, and a length it made up could step over good records. A value
/// holding bytes framed and checksummed as a record could be mistaken for
/// one; the checksum makes that as likely as a collision of CRC32C.) Only
/// when nothing from the bad spot to the end checks out does the scan end
/// there ([`ScanEnd::Bad`]): a torn tail.
pub struct Scanner<'a> {
    file: &'a dyn LogFile,
    /// File offset of `buf[0]`.
    buf_start: u64,
    buf: Vec<u8>,
    /// Next record's file offset.
    pos: u64,
    /// Scanning stops here.
    end: u64,
    /// Damage stepped over so far.
    skipped: Vec<Skipped>,
}

/// Bytes read per chunk: large enough that a sequential scan runs at the
/// device's streaming speed.
const SCAN_CHUNK: usize = 1 << 20;

impl<'a> Scanner<'a> {
    pub fn new(file: &'a dyn LogFile, from: u64, end: u64) -> Scanner<'a> {
        Scanner { file, buf_start: from, buf: Vec::new(), pos: from, end, skipped: Vec::new() }
    }

    /// Damage stepped over so far, in file order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next good record and its offset, `Ok(None)` at the end, or the
    /// torn tail where the bytes stop being records. Damage with good
    /// records behind it is stepped over. I/O errors are returned as such.
    pub fn next_record(&mut self) -> std::io::Result<Result<Option<(u64, RecordRef<'_>)>, ScanEnd>> {
        if self.pos >= self.end {
            return Ok(Ok(None));
        }
        let pos = self.pos;
        // The common case, a good record, checks its bytes once.
        let padded = match self.check(pos)? {
            Ok(padded) => padded,
            Err(reason) => match self.resync(pos)? {
                Some((next, padded)) => {
                    self.skipped.push(Skipped { at: pos, bytes: next - pos, reason });
                    padded
                }
                None => return Ok(Err(ScanEnd::Bad { at: pos, reason })),
            },
        };
        let pos = self.pos;
        let at = (pos - self.buf_start) as usize;
        let rec = RecordRef::verified(&self.buf[at..at + padded as usize]);
        self.pos += padded;
        Ok(Ok(Some((pos, rec))))
    }

    /// Whether a good record starts at `pos`: its padded length (its bytes
    /// then buffered), or why not.
    fn check(&mut self, pos: u64) -> std::io::Result<Result<u64, &'static str>> {
        self.pos = pos;
        if self.end - pos < RECORD_HEADER_LEN as u64 {
            return Ok(Err("bytes too few for a record header"));
        }
        self.fill(RECORD_HEADER_LEN)?;
        let at = (pos - self.buf_start) as usize;
        let header = match RecordHeader::parse(&self.buf[at..]) {
            Ok(h) => h,
            Err(reason) => return Ok(Err(reason)),
        };
        let padded = header.padded_len();
        if pos + padded > self.end {
            return Ok(Err("record runs past the end of the file"));
        }
        self.fill(padded as usize)?;
        let at = (pos - self.buf_start) as usize;
        Ok(RecordRef::decode(&self.buf[at..at + padded as usize]).map(|_| padded))
    }

    /// The first position after the bad spot `bad` where a good record
    /// starts, if any before the end, with its padded length; the scanner
    /// is left there.
    fn resync(&mut self, bad: u64) -> std::io::Result<Option<(u64, u64)>> {
        let mut at = bad + RECORD_ALIGN;
        while at < self.end {
            if let Ok(padded) = self.check(at)? {
                return Ok(Some((at, padded)));
            }
            at += RECORD_ALIGN;
        }
        self.pos = bad;
        Ok(None)
    }

    /// Makes sure `need` bytes from `pos` are buffered.
    fn fill(&mut self, need: usize) -> std::io::Result<()> {
        if self.pos < self.buf_start {
            // Back at a bad spot a resync found nothing after.
            self.buf.clear();
            self.buf_start = self.pos;
        }
        let have_end = self.buf_start + self.buf.len() as u64;
        if self.pos + need as u64 <= have_end {
            return Ok(());
        }
        let keep_from = (self.pos - self.buf_start) as usize;
        self.buf.drain(..keep_from);
        self.buf_start = self.pos;
        let want = need.max(SCAN_CHUNK).min((self.end - self.pos) as usize);
        let have = self.buf.len();
        if want > have {
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf[have..], self.pos + have as u64)?;
        }
        Ok(())
    }
}

/// Bytes of the header every segment starts with.
pub const fn first_record_pos() -> u64 {
    SEGMENT_HEADER_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_strangers_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(0xabc)), Some(0xabc));
        for other in
            ["index.ckpt", "00000000000000g1.log", "1.log", "0000000000000001.log.corrupt", "00000000000000AB.log"]
        {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }
}
