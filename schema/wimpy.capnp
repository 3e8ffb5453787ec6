@0x888760bd46ad33cd;
# wimpy wire schema. Every type here is usable from any Cap'n Proto
# implementation (C++, Python, Rust, ...): no language-specific annotations.

struct KeyHashRange {
  # A half-open range [start, end) of 64-bit key hashes (see keyHash in
  # schema/src/lib.rs: XXH3-64, seed 0, over the raw key bytes). The range
  # wraps around zero when end <= start; start == end means the whole space.
  start @0 :UInt64;
  end @1 :UInt64;
}

struct StoreStats {
  # Figures one worker's FAWN-DS store reports about itself.
  liveKeys @0 :UInt64;      # keys that a get would find
  logBytes @1 :UInt64;      # bytes of all log segments on disk
  garbageBytes @2 :UInt64;  # log bytes held by overwritten or deleted records
  indexBytes @3 :UInt64;    # bytes of the in-DRAM hash index
}
