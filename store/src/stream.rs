//! Record streams: how a key range travels from one store to another when
//! membership changes (split on the sender, merge on the receiver). Each
//! record is framed exactly as in the log, so it carries its own CRC32C.

use std::io::Read;

use super::error::{Result, StoreError};
use super::format::{FLAG_TOMBSTONE, RECORD_HEADER_LEN, RecordHeader, RecordRef, encode_record};

/// One key and its value, or `None` for a deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// The write's version; 0 for none.
    pub version: u64,
}

/// Appends `record` to `out` as one frame.
pub fn encode_stream_record(out: &mut Vec<u8>, record: &Record) {
    // Frames are padded like log records, relative to the frame's start.
    let mut frame = Vec::new();
    match &record.value {
        Some(v) => encode_record(&mut frame, &record.key, v, 0, record.version),
        None => encode_record(&mut frame, &record.key, &[], FLAG_TOMBSTONE, record.version),
    }
    out.extend_from_slice(&frame);
}

/// How many bytes at the start of `bytes` are whole frames: a stream cut
/// into pieces anywhere is read a piece at a time, and the rest waits for
/// the next piece. A header that is no frame's ends the count too (the
/// reader then says why).
pub fn whole_frames_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + RECORD_HEADER_LEN) {
        let Ok(h) = RecordHeader::parse(head) else { return bytes.len() };
        let len = h.padded_len() as usize;
        if at + len > bytes.len() {
            break;
        }
        at += len;
    }
    at
}

/// Reads frames from a byte stream, checking each one and refusing keys and
/// values over the receiving store's limits before allocating for them.
#[derive(Debug)]
pub struct RecordStreamReader<R> {
    src: R,
    max_key: usize,
    max_value: usize,
    offset: u64,
    done: bool,
}

impl<R: Read> RecordStreamReader<R> {
    pub fn new(src: R, max_key: usize, max_value: usize) -> Self {
        RecordStreamReader { src, max_key, max_value, offset: 0, done: false }
    }

    fn bad(&self, reason: &'static str) -> StoreError {
        StoreError::Corrupt { segment: u64::MAX, offset: self.offset, reason }
    }

    fn read_one(&mut self) -> Result<Option<Record>> {
        let mut head = [0u8; RECORD_HEADER_LEN];
        let mut got = 0;
        while got < head.len() {
            match self.src.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(self.bad("stream ends inside a record header")),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(StoreError::Io { op: "reading a record stream", source: e });
                }
            }
        }
        let h = RecordHeader::parse(&head).map_err(|r| self.bad(r))?;
        if h.key_len as usize > self.max_key {
            return Err(StoreError::KeyTooLarge { len: h.key_len as usize, max: self.max_key });
        }
        if h.value_len as usize > self.max_value {
            return Err(StoreError::ValueTooLarge { len: h.value_len as usize, max: self.max_value });
        }
        let mut frame = head.to_vec();
        frame.resize(h.padded_len() as usize, 0);
        self.src.read_exact(&mut frame[RECORD_HEADER_LEN..]).map_err(|_| self.bad("stream ends inside a record"))?;
        let rec = RecordRef::decode(&frame).map_err(|r| self.bad(r))?;
        self.offset += frame.len() as u64;
        Ok(Some(Record {
            key: rec.key.to_vec(),
            value: (!rec.is_tombstone()).then(|| rec.value.to_vec()),
            version: rec.version,
        }))
    }
}

impl<R: Read> Iterator for RecordStreamReader<R> {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        let r = self.read_one().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_cut_anywhere_has_its_whole_frames_counted() {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for (i, len) in [3usize, 0, 5000, 17].into_iter().enumerate() {
            let r = Record { key: vec![b'k', i as u8], value: Some(vec![1; len]), version: i as u64 };
            encode_stream_record(&mut bytes, &r);
            ends.push(bytes.len());
        }
        for cut in 0..=bytes.len() {
            let whole = ends.iter().copied().filter(|&e| e <= cut).max().unwrap_or(0);
            assert_eq!(whole_frames_len(&bytes[..cut]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let records = vec![
            Record { key: b"a".to_vec(), value: Some(b"1".to_vec()), version: 0 },
            Record { key: b"bb".to_vec(), value: None, version: 5 },
            Record { key: b"c".to_vec(), value: Some(vec![7; 1000]), version: u64::MAX },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            encode_stream_record(&mut bytes, r);
        }
        let back: Vec<_> = RecordStreamReader::new(&bytes[..], 100, 2000).collect::<Result<_>>().unwrap();
        assert_eq!(back, records);

        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(RecordStreamReader::new(&bad[..], 100, 2000).any(|r| r.is_err()));
        let cut = &bytes[..bytes.len() - 3];
        assert!(RecordStreamReader::new(cut, 100, 2000).any(|r| r.is_err()));
        let refused = RecordStreamReader::new(&bytes[..], 100, 10).find_map(|r| r.err());
        assert!(matches!(refused, Some(StoreError::ValueTooLarge { len: 1000, max: 10 })));
    }
}
