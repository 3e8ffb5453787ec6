//! The one key hash of wimpy.
//!
//! Routing must be reproducible by any client in any language, so the hash is
//! a published, widely implemented function: XXH3-64 with seed 0 over the raw
//! key bytes (xxhash.com; `xxhash.xxh3_64_intdigest(key)` in Python,
//! `XXH3_64bits(key, len)` in C). Workers use the same value to place keys in
//! their stores, so a key-hash range names the same keys on every node.

use std::fmt;

/// The 64-bit routing hash of `key`: XXH3-64, seed 0.
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// A half-open range `[start, end)` of key hashes that wraps around zero.
///
/// `start == end` is the whole hash space: a ring with one member owns
/// everything, and there is no empty range to express.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHashRange {
    /// First hash in the range.
    pub start: u64,
    /// First hash past the range; below `start` when the range wraps.
    pub end: u64,
}

impl KeyHashRange {
    /// The range holding every hash.
    pub const ALL: KeyHashRange = KeyHashRange { start: 0, end: 0 };

    /// The range `[start, end)`, wrapping when `end <= start`.
    pub fn new(start: u64, end: u64) -> Self {
        KeyHashRange { start, end }
    }

    /// Whether `hash` lies in the range.
    pub fn contains(&self, hash: u64) -> bool {
        if self.start < self.end {
            self.start <= hash && hash < self.end
        } else {
            // Wrapping (or whole-space) range: everything not in [end, start).
            hash >= self.start || hash < self.end
        }
    }

    /// The fraction of the hash space the range covers.
    pub fn share(&self) -> f64 {
        let len = if self.start == self.end { 1u128 << 64 } else { self.end.wrapping_sub(self.start) as u128 };
        len as f64 / (1u128 << 64) as f64
    }

    /// Whether the hash of `key` lies in the range.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.contains(key_hash(key))
    }

    /// The range cut at every multiple of `width` (a power of two), in
    /// order from its start: pieces that together hold exactly its hashes.
    pub fn pieces(&self, width: u64) -> Vec<KeyHashRange> {
        assert!(width.is_power_of_two(), "pieces of {width}: not a power of two");
        // On the line 0..2^65, where a wrapping range does not wrap.
        let start = self.start as u128;
        let len = if self.start == self.end { 1u128 << 64 } else { self.end.wrapping_sub(self.start) as u128 };
        let (end, width) = (start + len, width as u128);
        let mut pieces = Vec::new();
        let mut at = start;
        while at < end {
            let next = ((at / width + 1) * width).min(end);
            pieces.push(KeyHashRange::new(at as u64, next as u64));
            at = next;
        }
        pieces
    }
}

/// Several key-hash ranges, to ask of many hashes whether any range holds
/// them: a lookup costs a binary search, not a pass over the ranges (a scan
/// asks it of every record of a log, for hundreds of ranges).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// Disjoint `[start, end)` spans on the line 0..2^64, in order.
    spans: Vec<(u128, u128)>,
}

impl RangeSet {
    pub fn new(ranges: &[KeyHashRange]) -> RangeSet {
        const TOP: u128 = 1 << 64;
        let mut spans: Vec<(u128, u128)> = Vec::with_capacity(ranges.len() + 1);
        for r in ranges {
            let (s, e) = (u128::from(r.start), u128::from(r.end));
            if r.start < r.end {
                spans.push((s, e));
            } else {
                // Wrapping, or the whole space: two plain pieces.
                spans.push((s, TOP));
                spans.push((0, e));
            }
        }
        spans.retain(|(s, e)| s < e);
        spans.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        RangeSet { spans: merged }
    }

    /// Whether any of the ranges holds `hash`.
    pub fn contains(&self, hash: u64) -> bool {
        let h = u128::from(hash);
        let i = self.spans.partition_point(|&(s, _)| s <= h);
        i > 0 && h < self.spans[i - 1].1
    }
}

impl fmt::Debug for KeyHashRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#018x}, {:#018x})", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_a_range_at_multiples_of_the_width_and_hold_its_hashes_alone() {
        let w = 1u64 << 60;
        for r in [
            KeyHashRange::new(5, 7),
            KeyHashRange::new(3 << 60, 5 << 60),
            KeyHashRange::new((15 << 60) + 9, (1 << 60) + 2),
            KeyHashRange::new(3 << 60, 0),
            KeyHashRange::ALL,
        ] {
            let pieces = r.pieces(w);
            let share: f64 = pieces.iter().map(KeyHashRange::share).sum();
            assert!((share - r.share()).abs() < 1e-12, "{r:?}: {pieces:?}");
            assert_eq!(pieces.first().unwrap().start, r.start);
            assert_eq!(pieces.last().unwrap().end, r.end);
            for pair in pieces.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{r:?}: {pieces:?}");
                assert_eq!(pair[0].end % w, 0, "{r:?}: {pieces:?}");
            }
            for p in &pieces {
                // None wraps but the one ending at the top of the space.
                assert!(p.start < p.end || p.end == 0, "{r:?}: {p:?}");
                assert!(p.share() <= 1.0 / 16.0);
                for h in [p.start, p.end.wrapping_sub(1)] {
                    assert!(r.contains(h), "{r:?}: {p:?}");
                }
            }
        }
        assert_eq!(KeyHashRange::ALL.pieces(w).len(), 16);
        assert_eq!(KeyHashRange::new((15 << 60) + 9, (1 << 60) + 2).pieces(w).len(), 3);
    }

    #[test]
    fn hash_matches_published_xxh3_vectors() {
        // Values computed independently with the Python `xxhash` package (xxh3_64_intdigest).
        assert_eq!(key_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(key_hash(b"a"), 0xe6c6_32b6_1e96_4e1f);
    }

    #[test]
    fn plain_range_excludes_its_end() {
        let r = KeyHashRange::new(10, 20);
        assert!(!r.contains(9));
        assert!(r.contains(10));
        assert!(r.contains(19));
        assert!(!r.contains(20));
    }

    #[test]
    fn wrapping_range_covers_both_ends() {
        let r = KeyHashRange::new(u64::MAX - 1, 2);
        assert!(r.contains(u64::MAX - 1));
        assert!(r.contains(u64::MAX));
        assert!(r.contains(0));
        assert!(r.contains(1));
        assert!(!r.contains(2));
        assert!(!r.contains(u64::MAX - 2));
    }

    #[test]
    fn a_range_s_share_of_the_hash_space() {
        assert_eq!(KeyHashRange::ALL.share(), 1.0);
        assert_eq!(KeyHashRange::new(0, 1 << 62).share(), 0.25);
        assert_eq!(KeyHashRange::new(3 << 62, 1 << 62).share(), 0.5, "wrapping");
    }

    #[test]
    fn a_range_set_holds_what_one_of_its_ranges_holds() {
        let ranges = [
            KeyHashRange::new(10, 20),
            KeyHashRange::new(15, 30),
            KeyHashRange::new(u64::MAX - 5, 3),
            KeyHashRange::new(100, 101),
        ];
        let set = RangeSet::new(&ranges);
        let probes = [0, 2, 3, 9, 10, 19, 20, 29, 30, 99, 100, 101, u64::MAX - 6, u64::MAX - 5, u64::MAX];
        for h in probes {
            assert_eq!(set.contains(h), ranges.iter().any(|r| r.contains(h)), "hash {h}");
        }
        assert!(RangeSet::new(&[KeyHashRange::ALL]).contains(12345));
        assert!(!RangeSet::new(&[]).contains(0));
    }

    #[test]
    fn equal_bounds_mean_everything() {
        assert!(KeyHashRange::ALL.contains(0));
        assert!(KeyHashRange::ALL.contains(u64::MAX));
        assert!(KeyHashRange::new(7, 7).contains(3));
    }
}
