//! The in-DRAM hash index: a partial-key cuckoo table that holds no keys.
//!
//! Each slot is 6 bytes: a 16-bit tag (valid bit + 15-bit key fragment) and
//! the 32-bit [`LogAddr`] of the key's newest record. A key may live in one of
//! two buckets of four slots. The second bucket is derived from the first and
//! the fragment alone (`alt(i) = (c(fragment) - i) mod n`, an involution), so
//! entries can be moved between their buckets without reading keys from the
//! log. A fragment match is only a candidate: the caller confirms it against
//! the full key stored in the log.
//!
//! Concurrency: one writer at a time (the store's writer lock), any number of
//! lock-free readers. Slots are atomics; each bucket stripe carries a sequence
//! counter that a writer makes odd while it changes a bucket in the stripe,
//! and readers retry when a counter moved under them (a seqlock). Moves copy
//! an entry into its other bucket before clearing the old slot, so a reader
//! never sees a key vanish in the middle of a move.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

use super::format::LogAddr;

/// Slots per bucket. Four slots with two choices load to ~95% before an
/// insert fails, which is what keeps the index near 6 bytes per key.
pub const SLOTS: usize = 4;
/// Bytes of index memory per slot: a u16 tag and a u32 address.
pub const SLOT_BYTES: usize = 6;
/// Tag bit that marks a slot as in use.
const VALID: u16 = 0x8000;
/// Seqlock stripes; a power of two so a mask picks the stripe. Enough that
/// a reader rarely shares one with the bucket the writer is changing.
const STRIPES: usize = 4096;
/// Breadth-first search over displacements stops after this many buckets;
/// past it the table counts as full and the store grows it.
const MAX_SEARCH_BUCKETS: usize = 2048;

/// One bucket: four tags then four addresses, 24 bytes.
#[derive(Debug, Default)]
#[repr(C)]
struct Bucket {
    tags: [AtomicU16; SLOTS],
    addrs: [AtomicU32; SLOTS],
}

/// Where a key hash may live in a table of `n` buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub tag: u16,
    pub first: usize,
    pub second: usize,
}

/// The candidate addresses a lookup found: usually none or one.
pub type Candidates = smallvec_lite::Candidates;

/// A set of bucket numbers. They come from a hash already, so they serve
/// as their own hash: no need for SipHash on the insert path.
type BucketSet = std::collections::HashSet<usize, std::hash::BuildHasherDefault<BucketNumberHasher>>;

#[derive(Default)]
struct BucketNumberHasher(u64);

impl std::hash::Hasher for BucketNumberHasher {
    fn finish(&self) -> u64 {
        // Spread the low bits into the high ones hashbrown takes its control
        // bytes from.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = n as u64;
    }
}

/// The cuckoo table.
#[derive(Debug)]
pub struct Index {
    buckets: Box<[Bucket]>,
    stripes: Box<[AtomicU64]>,
    /// Entries in use.
    len: AtomicU64,
}

/// Spreads the routing hash's bits so that a worker owning a narrow range of
/// the ring still fills its table evenly (murmur3's 64-bit finalizer).
fn mix(h: u64) -> u64 {
    let mut x = h;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Maps 32 random bits onto 0..n without division (Lemire's fast range).
fn fast_range(x: u32, n: usize) -> usize {
    ((u64::from(x) * n as u64) >> 32) as usize
}

/// The other bucket of an entry with fragment `tag` sitting in bucket `i`.
fn alt_bucket(i: usize, tag: u16, n: usize) -> usize {
    let c = fast_range((u32::from(tag)).wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995, n);
    if c >= i { c - i } else { c + n - i }
}

impl Index {
    /// An empty table of `buckets` buckets (at least one).
    pub fn with_buckets(buckets: usize) -> Index {
        let buckets = buckets.max(1);
        Index {
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            len: AtomicU64::new(0),
        }
    }

    /// Buckets a table needs to hold `keys` entries at `load` occupancy.
    pub fn buckets_for(keys: u64, load: f64) -> usize {
        ((keys as f64 / load / SLOTS as f64).ceil() as usize).max(1)
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub fn capacity(&self) -> u64 {
        (self.buckets.len() * SLOTS) as u64
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// Bytes of index memory: 6 per slot.
    pub fn memory_bytes(&self) -> u64 {
        self.capacity() * SLOT_BYTES as u64
    }

    /// Where `key_hash` may live.
    pub fn probe(&self, key_hash: u64) -> Probe {
        let m = mix(key_hash);
        let n = self.buckets.len();
        let tag = VALID | ((m >> 32) as u16 & 0x7fff);
        let first = fast_range(m as u32, n);
        Probe { tag, first, second: alt_bucket(first, tag, n) }
    }

    fn stripe(&self, bucket: usize) -> &AtomicU64 {
        &self.stripes[bucket & (STRIPES - 1)]
    }

    /// Addresses of entries whose fragment matches `key_hash`, read as one
    /// consistent snapshot of both buckets.
    pub fn lookup(&self, key_hash: u64) -> Candidates {
        let p = self.probe(key_hash);
        loop {
            let (s1, s2) = (self.stripe(p.first), self.stripe(p.second));
            let v1 = s1.load(Ordering::Acquire);
            let v2 = s2.load(Ordering::Acquire);
            if v1 & 1 == 1 || v2 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut found = Candidates::new();
            for b in [p.first, p.second] {
                let bucket = &self.buckets[b];
                for s in 0..SLOTS {
                    if bucket.tags[s].load(Ordering::Relaxed) == p.tag {
                        found.push(LogAddr(bucket.addrs[s].load(Ordering::Relaxed)));
                    }
                }
                if p.first == p.second {
                    break;
                }
            }
            fence(Ordering::Acquire);
            if s1.load(Ordering::Relaxed) == v1 && s2.load(Ordering::Relaxed) == v2 {
                return found;
            }
        }
    }

    /// Whether an entry for `key_hash` points at exactly `addr`. Addresses are
    /// unique, so this is an exact liveness test for the record at `addr`.
    /// Writer side only: reads without the seqlock.
    pub fn points_at(&self, key_hash: u64, addr: LogAddr) -> bool {
        let p = self.probe(key_hash);
        self.find_slot(p, addr).is_some()
    }

    fn find_slot(&self, p: Probe, addr: LogAddr) -> Option<(usize, usize)> {
        for b in [p.first, p.second] {
            let bucket = &self.buckets[b];
            for s in 0..SLOTS {
                if bucket.tags[s].load(Ordering::Relaxed) == p.tag && bucket.addrs[s].load(Ordering::Relaxed) == addr.0
                {
                    return Some((b, s));
                }
            }
        }
        None
    }

    /// Runs `change` on bucket `b` inside its stripe's write section.
    fn write_bucket(&self, b: usize, change: impl FnOnce(&Bucket)) {
        let stripe = self.stripe(b);
        let v = stripe.load(Ordering::Relaxed);
        stripe.store(v + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        change(&self.buckets[b]);
        stripe.store(v + 2, Ordering::Release);
    }

    fn set_slot(&self, b: usize, s: usize, tag: u16, addr: u32) {
        self.write_bucket(b, |bucket| {
            bucket.addrs[s].store(addr, Ordering::Relaxed);
            bucket.tags[s].store(tag, Ordering::Relaxed);
        });
    }

    /// Points the entry for `key_hash` at `old` to `new` instead. False when
    /// no such entry exists (it was overwritten or deleted meanwhile).
    pub fn replace(&self, key_hash: u64, old: LogAddr, new: LogAddr) -> bool {
        let p = self.probe(key_hash);
        match self.find_slot(p, old) {
            Some((b, s)) => {
                self.write_bucket(b, |bucket| bucket.addrs[s].store(new.0, Ordering::Relaxed));
                true
            }
            None => false,
        }
    }

    /// Removes the entry for `key_hash` at `addr`. False when there is none.
    pub fn remove(&self, key_hash: u64, addr: LogAddr) -> bool {
        let p = self.probe(key_hash);
        match self.find_slot(p, addr) {
            Some((b, s)) => {
                self.write_bucket(b, |bucket| bucket.tags[s].store(0, Ordering::Relaxed));
                self.len.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn free_slot(&self, b: usize) -> Option<usize> {
        (0..SLOTS).find(|&s| self.buckets[b].tags[s].load(Ordering::Relaxed) & VALID == 0)
    }

    /// Adds a new entry. The caller has made sure the key is not present.
    /// Returns false when no displacement path frees a slot: grow the table.
    pub fn insert(&self, key_hash: u64, addr: LogAddr) -> bool {
        let p = self.probe(key_hash);
        for b in [p.first, p.second] {
            if let Some(s) = self.free_slot(b) {
                self.set_slot(b, s, p.tag, addr.0);
                self.len.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        let Some(path) = self.find_path(p) else {
            return false;
        };
        // path = [(bucket, slot) ...] from one of the key's buckets to a
        // bucket with a free slot. Move entries from the far end back, each
        // into the hole left by the one after it.
        let n = self.buckets.len();
        let (last_bucket, _) = *path.last().unwrap();
        let mut hole = (last_bucket, self.free_slot(last_bucket).unwrap());
        for &(b, s) in path.iter().rev().skip(1) {
            let tag = self.buckets[b].tags[s].load(Ordering::Relaxed);
            let a = self.buckets[b].addrs[s].load(Ordering::Relaxed);
            debug_assert_eq!(alt_bucket(b, tag, n), hole.0);
            self.set_slot(hole.0, hole.1, tag, a);
            self.write_bucket(b, |bucket| bucket.tags[s].store(0, Ordering::Relaxed));
            hole = (b, s);
        }
        self.set_slot(hole.0, hole.1, p.tag, addr.0);
        self.len.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Breadth-first search for the shortest chain of moves that frees a slot
    /// in one of `p`'s buckets. Returns (bucket, slot) steps; the last step's
    /// bucket has a free slot, and each step's entry moves into the next step's
    /// bucket.
    fn find_path(&self, p: Probe) -> Option<Vec<(usize, usize)>> {
        let n = self.buckets.len();
        // Each node: (bucket, parent node index, slot in parent that leads here).
        let mut nodes: Vec<(usize, usize, usize)> = vec![(p.first, usize::MAX, 0)];
        // A bucket may appear on the path once: a path through a bucket twice
        // would move an entry that an earlier step already moved.
        let mut seen = BucketSet::with_capacity_and_hasher(64, Default::default());
        seen.insert(p.first);
        if seen.insert(p.second) {
            nodes.push((p.second, usize::MAX, 0));
        }
        let mut next = 0;
        while next < nodes.len() && nodes.len() < MAX_SEARCH_BUCKETS {
            let (b, _, _) = nodes[next];
            for s in 0..SLOTS {
                let tag = self.buckets[b].tags[s].load(Ordering::Relaxed);
                let to = alt_bucket(b, tag, n);
                if !seen.insert(to) {
                    continue;
                }
                nodes.push((to, next, s));
                if self.free_slot(to).is_some() {
                    // Walk back to a root, recording (bucket, slot-moved-out).
                    let mut steps = vec![(to, 0)];
                    let mut at = nodes.len() - 1;
                    while nodes[at].1 != usize::MAX {
                        let (_, parent, slot) = nodes[at];
                        steps.push((nodes[parent].0, slot));
                        at = parent;
                    }
                    steps.reverse();
                    return Some(steps);
                }
            }
            next += 1;
        }
        None
    }

    /// Calls `f(tag, addr)` for every entry. Writer side only.
    pub fn for_each_entry(&self, mut f: impl FnMut(u16, LogAddr)) {
        for bucket in self.buckets.iter() {
            for s in 0..SLOTS {
                let tag = bucket.tags[s].load(Ordering::Relaxed);
                if tag & VALID != 0 {
                    f(tag, LogAddr(bucket.addrs[s].load(Ordering::Relaxed)));
                }
            }
        }
    }

    /// Serializes the table, bucket by bucket: four little-endian u16 tags,
    /// then four little-endian u32 addresses. Writer side only.
    pub fn write_raw(&self, out: &mut Vec<u8>) {
        out.reserve(self.buckets.len() * SLOTS * SLOT_BYTES);
        for bucket in self.buckets.iter() {
            for t in &bucket.tags {
                out.extend_from_slice(&t.load(Ordering::Relaxed).to_le_bytes());
            }
            for a in &bucket.addrs {
                out.extend_from_slice(&a.load(Ordering::Relaxed).to_le_bytes());
            }
        }
    }

    /// Rebuilds a table from [`Index::write_raw`] output. None when the bytes
    /// do not describe a table (wrong length, a slot placed where its tag
    /// could never hash to cannot be detected and is left to the log check).
    pub fn read_raw(buckets: usize, raw: &[u8]) -> Option<Index> {
        if buckets == 0 || raw.len() != buckets * SLOTS * SLOT_BYTES {
            return None;
        }
        let index = Index::with_buckets(buckets);
        let mut len = 0;
        for (bucket, chunk) in index.buckets.iter().zip(raw.chunks_exact(SLOTS * SLOT_BYTES)) {
            for s in 0..SLOTS {
                let tag = u16::from_le_bytes([chunk[2 * s], chunk[2 * s + 1]]);
                let at = 2 * SLOTS + 4 * s;
                let addr = u32::from_le_bytes(chunk[at..at + 4].try_into().unwrap());
                if tag & VALID != 0 {
                    bucket.tags[s].store(tag, Ordering::Relaxed);
                    bucket.addrs[s].store(addr, Ordering::Relaxed);
                    len += 1;
                }
            }
        }
        index.len.store(len, Ordering::Relaxed);
        Some(index)
    }
}

/// A tiny inline vector for lookup results, so the common case of zero or
/// one candidate does not allocate.
pub mod smallvec_lite {
    use super::LogAddr;

    /// Up to eight addresses (two buckets of four slots).
    #[derive(Debug, Default, Clone)]
    pub struct Candidates {
        len: usize,
        items: [LogAddr; 8],
    }

    impl Candidates {
        pub fn new() -> Self {
            Candidates { len: 0, items: [LogAddr(0); 8] }
        }
        pub fn push(&mut self, a: LogAddr) {
            self.items[self.len] = a;
            self.len += 1;
        }
        pub fn as_slice(&self) -> &[LogAddr] {
            &self.items[..self.len]
        }
        #[cfg(test)]
        pub fn is_empty(&self) -> bool {
            self.len == 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hash(i: u64) -> u64 {
        wimpy_keyspace::key_hash(&i.to_le_bytes())
    }

    #[test]
    fn slot_is_six_bytes_and_bucket_twenty_four() {
        assert_eq!(std::mem::size_of::<Bucket>(), SLOTS * SLOT_BYTES);
    }

    #[test]
    fn alt_bucket_is_an_involution() {
        for n in [1usize, 2, 3, 7, 1000, 12345] {
            for i in 0..n.min(500) {
                for tag in [VALID, VALID | 1, VALID | 0x7fff, VALID | 0x1234] {
                    let j = alt_bucket(i, tag, n);
                    assert!(j < n);
                    assert_eq!(alt_bucket(j, tag, n), i);
                }
            }
        }
    }

    #[test]
    fn fills_past_ninety_percent_and_finds_every_entry() {
        let index = Index::with_buckets(10_007);
        let mut placed = HashMap::new();
        let mut i = 0u64;
        while index.insert(hash(i), LogAddr(i as u32)) {
            placed.insert(i, LogAddr(i as u32));
            i += 1;
        }
        let load = index.len() as f64 / index.capacity() as f64;
        assert!(load > 0.93, "table filled only to {load:.3}");
        for (k, addr) in &placed {
            assert!(index.lookup(hash(*k)).as_slice().contains(addr), "lost key {k}");
        }
    }

    #[test]
    fn replace_and_remove_touch_only_the_named_entry() {
        let index = Index::with_buckets(64);
        assert!(index.insert(hash(1), LogAddr(10)));
        assert!(index.insert(hash(2), LogAddr(20)));
        assert!(index.replace(hash(1), LogAddr(10), LogAddr(11)));
        assert!(!index.replace(hash(1), LogAddr(10), LogAddr(12)));
        assert_eq!(index.lookup(hash(1)).as_slice(), &[LogAddr(11)]);
        assert!(index.remove(hash(2), LogAddr(20)));
        assert!(index.lookup(hash(2)).is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn raw_round_trip_keeps_every_entry() {
        let index = Index::with_buckets(333);
        for i in 0..1000 {
            assert!(index.insert(hash(i), LogAddr(i as u32 * 3)));
        }
        let mut raw = Vec::new();
        index.write_raw(&mut raw);
        let back = Index::read_raw(333, &raw).unwrap();
        assert_eq!(back.len(), 1000);
        for i in 0..1000 {
            assert!(back.points_at(hash(i), LogAddr(i as u32 * 3)));
        }
        assert!(Index::read_raw(334, &raw).is_none());
    }

    #[test]
    fn readers_never_miss_an_entry_while_a_writer_displaces() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let index = Arc::new(Index::with_buckets(4096));
        // Keys 0..1000 stay put logically; the writer fills the table around
        // them, forcing many displacements of their slots.
        for i in 0..1000 {
            assert!(index.insert(hash(i), LogAddr(i as u32)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (index, stop) = (index.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rounds = 0;
                while !stop.load(Ordering::Relaxed) || rounds == 0 {
                    for i in 0..1000 {
                        let found = index.lookup(hash(i));
                        assert!(found.as_slice().contains(&LogAddr(i as u32)), "reader missed {i}");
                    }
                    rounds += 1;
                }
                rounds
            })
        };
        let mut i = 1000;
        while index.insert(hash(i), LogAddr(i as u32)) {
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
