//! Every decoder of bytes that come from disk or the network, fed arbitrary
//! bytes: it returns records or errors, never panics, and what it returns
//! checks out. (A bounded property run, so CI runs it on every change; the
//! cases grow with PROPTEST_CASES.)

use proptest::prelude::*;
use wimpy_store::{Record, RecordStreamReader, encode_stream_record};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A record stream (what a range move sends) of random bytes.
    #[test]
    fn a_record_stream_of_any_bytes_decodes_or_fails_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for r in RecordStreamReader::new(&bytes[..], 64, 512) {
            match r {
                Ok(rec) => {
                    prop_assert!(!rec.key.is_empty() && rec.key.len() <= 64);
                    prop_assert!(rec.value.as_ref().is_none_or(|v| v.len() <= 512));
                }
                Err(_) => break,
            }
        }
    }

    /// Good frames with bytes flipped: every record that comes out is one
    /// that went in (the checksum lets no damage through).
    #[test]
    fn flipped_frames_never_yield_a_record_that_was_not_sent(
        records in proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 1..16),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                prop_oneof![Just(0u64), any::<u64>()],
            ),
            1..12,
        ),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
    ) {
        let sent: Vec<Record> =
            records.into_iter().map(|(key, value, version)| Record { key, value, version }).collect();
        let mut bytes = Vec::new();
        for r in &sent {
            encode_stream_record(&mut bytes, r);
        }
        for (at, x) in &flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        for r in RecordStreamReader::new(&bytes[..], 64, 512) {
            match r {
                Ok(rec) => prop_assert!(sent.contains(&rec), "{:?} was never sent", rec),
                Err(_) => break,
            }
        }
    }
}
