//! The on-disk format, version 2: segment headers, records and log addresses.
//! docs/store-format.md draws every byte; keep the two in step.

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"WIMPYSEG";
/// The format this code writes. Version 2 adds versioned records
/// ([`FLAG_VERSIONED`]); version 1 segments, which have none, still open.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest segment format this code reads.
pub const OLDEST_READABLE_FORMAT: u16 = 1;
/// Bytes of a segment header; records start right after it.
pub const SEGMENT_HEADER_LEN: u64 = 32;
/// Bytes of a record header's fixed part: crc32c, value length, key length,
/// flags, reserved. A versioned record has its version after it.
pub const RECORD_HEADER_LEN: usize = 12;
/// Bytes of a versioned record's version.
pub const VERSION_LEN: usize = 8;
/// Records start on multiples of this, so a 32-bit address counts 8-byte
/// units and reaches 32 GiB of log.
pub const RECORD_ALIGN: u64 = 8;
/// Record flag: this record deletes its key.
pub const FLAG_TOMBSTONE: u8 = 1;
/// Record flag: a version (u64, non-zero) follows the fixed header. Chain
/// replication orders each key's writes by it; a record without one has
/// version 0.
pub const FLAG_VERSIONED: u8 = 2;
/// Largest key the format can frame (the key length is a u16).
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

/// Smallest and largest segment size, as log2 of bytes.
pub const MIN_SEGMENT_SHIFT: u8 = 20;
pub const MAX_SEGMENT_SHIFT: u8 = 32;

/// Where a record lives: a 32-bit count of 8-byte units into the log address
/// space. The high bits pick a segment slot, the low bits the position in it.
/// Slots are reused once a compacted segment's readers are gone, so the
/// address space is bounded by live data, not by data ever written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogAddr(pub u32);

/// How addresses split into slot and position for one segment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrSpace {
    /// log2 of the segment size in bytes.
    pub segment_shift: u8,
}

impl AddrSpace {
    /// Bits of an address that count 8-byte units inside a segment.
    fn pos_bits(self) -> u32 {
        u32::from(self.segment_shift) - RECORD_ALIGN.trailing_zeros()
    }
    /// Number of segment slots this geometry offers.
    pub fn slots(self) -> u32 {
        1u32 << (32 - self.pos_bits())
    }
    /// Bytes per segment file.
    pub fn segment_bytes(self) -> u64 {
        1u64 << self.segment_shift
    }
    /// The address of byte `pos` in the segment at `slot`.
    pub fn addr(self, slot: u32, pos: u64) -> LogAddr {
        debug_assert!(pos.is_multiple_of(RECORD_ALIGN) && pos < self.segment_bytes());
        debug_assert!(slot < self.slots());
        LogAddr((slot << self.pos_bits()) | (pos / RECORD_ALIGN) as u32)
    }
    /// The slot and byte position `addr` names.
    pub fn split(self, addr: LogAddr) -> (u32, u64) {
        let bits = self.pos_bits();
        let slot = if bits == 32 { 0 } else { addr.0 >> bits };
        let pos = u64::from(addr.0 & (u32::MAX >> (32 - bits))) * RECORD_ALIGN;
        (slot, pos)
    }
}

/// The header at the start of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Order of this segment in the log: later segments hold later writes.
    pub seq: u64,
    /// Address-space slot the segment occupies.
    pub slot: u32,
    /// log2 of the segment size the store was created with.
    pub segment_shift: u8,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10] = self.segment_shift;
        b[12..16].copy_from_slice(&self.slot.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a whole, intact header: a segment whose creation a crash cut short,
    /// or damage.
    Damaged(String),
    /// An intact header this build cannot read (a newer format, say): the
    /// store must not be opened, lest its data be misread or lost.
    Unsupported(String),
}

/// Parses a segment header, saying what is wrong with it if it is not one.
pub fn read_segment_header(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let h = parse_segment_header(b).map_err(HeaderError::Damaged)?;
    let version = u16::from_le_bytes(b[8..10].try_into().unwrap());
    if !(OLDEST_READABLE_FORMAT..=FORMAT_VERSION).contains(&version) {
        return Err(HeaderError::Unsupported(format!(
            "segment format version {version}; this build reads versions {OLDEST_READABLE_FORMAT} to {FORMAT_VERSION}"
        )));
    }
    if !(MIN_SEGMENT_SHIFT..=MAX_SEGMENT_SHIFT).contains(&h.segment_shift) {
        return Err(HeaderError::Unsupported(format!("segment size 2^{} is out of range", h.segment_shift)));
    }
    if h.slot >= (AddrSpace { segment_shift: h.segment_shift }).slots() {
        return Err(HeaderError::Damaged(format!("slot {} is outside the address space", h.slot)));
    }
    Ok(h)
}

/// The checksummed part of the header, before its meaning is checked.
fn parse_segment_header(b: &[u8]) -> Result<SegmentHeader, String> {
    if b.len() < SEGMENT_HEADER_LEN as usize {
        return Err(format!("{} bytes is too short for a segment header", b.len()));
    }
    if b[0..8] != SEGMENT_MAGIC {
        return Err("not a wimpy segment (bad magic)".into());
    }
    let stored = u32::from_le_bytes(b[24..28].try_into().unwrap());
    if stored != crc32c::crc32c(&b[0..24]) {
        return Err("segment header checksum mismatch".into());
    }
    if b[11] != 0 || b[28..32] != [0; 4] {
        return Err("reserved segment header bytes are set".into());
    }
    let segment_shift = b[10];
    let slot = u32::from_le_bytes(b[12..16].try_into().unwrap());
    let seq = u64::from_le_bytes(b[16..24].try_into().unwrap());
    Ok(SegmentHeader { seq, slot, segment_shift })
}

/// Bytes a record of this key, value and version occupies in the log,
/// padding included.
pub fn record_len(key_len: usize, value_len: usize, version: u64) -> u64 {
    framed_len(if version == 0 { 0 } else { FLAG_VERSIONED }, key_len, value_len)
}

/// Bytes, padding included, of a record whose flags byte is `flags`.
pub fn framed_len(flags: u8, key_len: usize, value_len: usize) -> u64 {
    ((key_start(flags) + key_len + value_len) as u64).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Appends one framed record to `out`, padded to [`RECORD_ALIGN`]. A
/// non-zero `version` is stored with it ([`FLAG_VERSIONED`]). `out`'s
/// length must already be a multiple of [`RECORD_ALIGN`] relative to the
/// record's position.
pub fn encode_record(out: &mut Vec<u8>, key: &[u8], value: &[u8], flags: u8, version: u64) {
    debug_assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN);
    debug_assert!(flags & FLAG_VERSIONED == 0, "the version decides the flag");
    let flags = if version == 0 { flags } else { flags | FLAG_VERSIONED };
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.push(flags);
    out.push(0);
    if version != 0 {
        out.extend_from_slice(&version.to_le_bytes());
    }
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    let padded = start + record_len(key.len(), value.len(), version) as usize;
    out.resize(padded, 0);
}

/// Where the key starts in a record whose flags byte is `flags`, read
/// without the checksum (to tell whose a damaged record is).
pub fn key_start(flags: u8) -> usize {
    RECORD_HEADER_LEN + if flags & FLAG_VERSIONED != 0 { VERSION_LEN } else { 0 }
}

/// The fixed-size front of a record, before its checksum has been verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub crc: u32,
    pub value_len: u32,
    pub key_len: u16,
    pub flags: u8,
}

impl RecordHeader {
    /// Parses the first [`RECORD_HEADER_LEN`] bytes of `b`, rejecting what no
    /// writer produces (empty keys, unknown flags, a set reserved byte).
    pub fn parse(b: &[u8]) -> Result<RecordHeader, &'static str> {
        if b.len() < RECORD_HEADER_LEN {
            return Err("record header cut short");
        }
        let h = RecordHeader {
            crc: u32::from_le_bytes(b[0..4].try_into().unwrap()),
            value_len: u32::from_le_bytes(b[4..8].try_into().unwrap()),
            key_len: u16::from_le_bytes(b[8..10].try_into().unwrap()),
            flags: b[10],
        };
        if h.key_len == 0 {
            return Err("record with an empty key");
        }
        if h.flags & !(FLAG_TOMBSTONE | FLAG_VERSIONED) != 0 || b[11] != 0 {
            return Err("record header has unknown flag bits or a set reserved byte");
        }
        if h.flags & FLAG_TOMBSTONE != 0 && h.value_len != 0 {
            return Err("tombstone carries a value");
        }
        Ok(h)
    }

    /// Where the key starts: after the fixed header and the version, if any.
    pub fn key_start(&self) -> usize {
        key_start(self.flags)
    }

    /// Bytes of the framed record without padding.
    pub fn body_end(&self) -> usize {
        self.key_start() + self.key_len as usize + self.value_len as usize
    }

    /// Bytes of the framed record with padding.
    pub fn padded_len(&self) -> u64 {
        framed_len(self.flags, self.key_len as usize, self.value_len as usize)
    }

    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }
}

/// A record whose checksum has been verified, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub header: RecordHeader,
    /// The write's version; 0 for a record stored without one.
    pub version: u64,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// Parses and verifies the record at the start of `b`, which must hold
    /// at least the whole unpadded record.
    pub fn decode(b: &'a [u8]) -> Result<RecordRef<'a>, &'static str> {
        let header = RecordHeader::parse(b)?;
        let end = header.body_end();
        if b.len() < end {
            return Err("record cut short");
        }
        if crc32c::crc32c(&b[4..end]) != header.crc {
            return Err("record checksum mismatch");
        }
        let rec = RecordRef::verified(b);
        if rec.header.flags & FLAG_VERSIONED != 0 && rec.version == 0 {
            return Err("versioned record with version 0");
        }
        Ok(rec)
    }

    /// The record at the start of `b`, which [`RecordRef::decode`] has
    /// already accepted: its fields, without checking its bytes again.
    pub fn verified(b: &'a [u8]) -> RecordRef<'a> {
        let header = RecordHeader::parse(b).expect("a verified record");
        let version = if header.flags & FLAG_VERSIONED != 0 {
            u64::from_le_bytes(b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + VERSION_LEN].try_into().unwrap())
        } else {
            0
        };
        let key_start = header.key_start();
        let key_end = key_start + header.key_len as usize;
        RecordRef { header, version, key: &b[key_start..key_end], value: &b[key_end..header.body_end()] }
    }

    pub fn is_tombstone(&self) -> bool {
        self.header.is_tombstone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_pads() {
        let mut buf = Vec::new();
        encode_record(&mut buf, b"key", b"value!", 0, 0);
        assert_eq!(buf.len(), 24); // 12 + 3 + 6 = 21, padded to 24
        let r = RecordRef::decode(&buf).unwrap();
        assert_eq!(r.key, b"key");
        assert_eq!(r.value, b"value!");
        assert_eq!(r.version, 0);
        assert!(!r.is_tombstone());
    }

    #[test]
    fn versioned_records_round_trip_and_unversioned_ones_keep_the_v1_layout() {
        let mut plain = Vec::new();
        encode_record(&mut plain, b"key", b"value!", 0, 0);
        // Version 1's example record, byte for byte (docs/store-format.md).
        assert_eq!(&plain[..12], &[0x70, 0xe8, 0x6a, 0xf3, 6, 0, 0, 0, 3, 0, 0, 0]);

        let mut buf = Vec::new();
        encode_record(&mut buf, b"key", b"value!", 0, 0x0102_0304_0506_0708);
        assert_eq!(buf.len(), 32); // 12 + 8 + 3 + 6 = 29, padded to 32
        assert_eq!(buf[10], FLAG_VERSIONED);
        let r = RecordRef::decode(&buf).unwrap();
        assert_eq!((r.key, r.value, r.version), (&b"key"[..], &b"value!"[..], 0x0102_0304_0506_0708));
        assert_eq!(r.header.padded_len(), record_len(3, 6, 7));

        let mut gone = Vec::new();
        encode_record(&mut gone, b"key", b"", FLAG_TOMBSTONE, 9);
        let r = RecordRef::decode(&gone).unwrap();
        assert!(r.is_tombstone());
        assert_eq!((r.key, r.version), (&b"key"[..], 9));
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        for version in [0, 77] {
            let mut buf = Vec::new();
            encode_record(&mut buf, b"k", b"some value bytes", 0, version);
            let body = RecordHeader::parse(&buf).unwrap().body_end();
            for byte in 0..body {
                for bit in 0..8 {
                    let mut bad = buf.clone();
                    bad[byte] ^= 1 << bit;
                    assert!(
                        RecordRef::decode(&bad).is_err(),
                        "flip at {byte}.{bit} went unnoticed (version {version})"
                    );
                }
            }
        }
    }

    #[test]
    fn zeroed_bytes_are_not_a_record() {
        assert!(RecordRef::decode(&[0u8; 64]).is_err());
    }

    #[test]
    fn addresses_split_back_into_slot_and_position() {
        for shift in [MIN_SEGMENT_SHIFT, 20, 28, MAX_SEGMENT_SHIFT] {
            let space = AddrSpace { segment_shift: shift };
            let last_slot = space.slots() - 1;
            let last_pos = space.segment_bytes() - RECORD_ALIGN;
            for (slot, pos) in [(0, 0), (0, 8), (last_slot, last_pos), (last_slot / 2, 4096)] {
                assert_eq!(space.split(space.addr(slot, pos)), (slot, pos), "shift {shift}");
            }
        }
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader { seq: 42, slot: 3, segment_shift: 20 };
        let b = h.encode();
        assert_eq!(read_segment_header(&b).unwrap(), h);
        let mut bad = b;
        bad[17] ^= 4;
        assert!(read_segment_header(&bad).is_err());
        assert!(read_segment_header(&b[..10]).is_err());
    }
}
