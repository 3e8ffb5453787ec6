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
