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

    /// Whether the hash of `key` lies in the range.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.contains(key_hash(key))
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
    fn equal_bounds_mean_everything() {
        assert!(KeyHashRange::ALL.contains(0));
        assert!(KeyHashRange::ALL.contains(u64::MAX));
        assert!(KeyHashRange::new(7, 7).contains(3));
    }
}
