//! The contract's decoders fed damaged messages: well-formed batches, jobs
//! and failures with bytes flipped (so the damage lands in real pointers,
//! lists and unions), read under the reader limits the nodes use. Each
//! returns a value or an error, never panics, and what decodes keeps to
//! the limits (a bounded property run in CI; more with PROPTEST_CASES).

use proptest::prelude::*;
use wimpy_schema::batch::{MAX_BATCH_BYTES, MAX_BATCH_OPS, read_requests};
use wimpy_schema::job::{Job, wire};
use wimpy_schema::wimpy_capnp::{failure, job, key_op};
use wimpy_schema::{Failure, LimitKind, StorageKind};

/// `message` serialised, with `flips` applied past the segment table.
fn damaged(message: &capnp::message::Builder<capnp::message::HeapAllocator>, flips: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    capnp::serialize::write_message(&mut bytes, message).unwrap();
    let body = bytes.len() - 8;
    for (at, x) in flips {
        bytes[8 + at % body] ^= x;
    }
    bytes
}

fn read(bytes: &[u8]) -> Option<capnp::message::Reader<capnp::serialize::OwnedSegments>> {
    capnp::serialize::read_message(&mut &bytes[..], wimpy_schema::reader_options()).ok()
}

fn flips() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), 1u8..=255), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn damaged_batches_decode_within_the_limits_or_fail_cleanly(
        ops in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 1..12), 0u8..3), 1..20),
        flips in flips(),
    ) {
        let mut message = capnp::message::Builder::new_default();
        let root = message.init_root::<capnp::any_pointer::Builder<'_>>();
        let mut list = root.initn_as::<capnp::struct_list::Builder<'_, key_op::Owned>>(ops.len() as u32);
        for (i, (key, kind)) in ops.iter().enumerate() {
            let mut op = list.reborrow().get(i as u32);
            op.set_key(key);
            match kind {
                0 => op.set_get(()),
                1 => op.set_put(key),
                _ => op.set_delete(()),
            }
        }
        let bytes = damaged(&message, &flips);
        if let Some(m) = read(&bytes)
            && let Ok(ops) = m.get_root::<capnp::struct_list::Reader<'_, key_op::Owned>>()
            && let Ok(Ok(requests)) = read_requests(ops)
        {
            prop_assert!(requests.len() <= MAX_BATCH_OPS);
            prop_assert!(requests.iter().map(|r| r.bytes()).sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn damaged_jobs_decode_to_checked_jobs_or_fail_cleanly(
        ops in proptest::sample::subsequence(
            vec!["grayscale", "blur:2", "resize:64:48", "crop:1:1:8:8", "conv3:0,-1,0,-1,5,-1,0,-1,0", "rotate:90", "encode:png", "sha256:3"],
            1..5,
        ),
        flips in flips(),
    ) {
        let texts: Vec<String> = ops.iter().map(|s| s.to_string()).collect();
        let Ok(parsed) = Job::parse(&texts) else { return Ok(()) };
        let mut message = capnp::message::Builder::new_default();
        wire::write_job(&parsed, None, 0, message.init_root::<job::Builder<'_>>());
        let bytes = damaged(&message, &flips);
        if let Some(m) = read(&bytes)
            && let Ok(j) = m.get_root::<job::Reader<'_>>()
            && let Ok((job, _, _)) = wire::read_job(j)
        {
            // What decodes is a job the parser accepts too.
            let again: Vec<String> = job.ops().iter().map(|op| op.to_string()).collect();
            prop_assert!(Job::parse(&again).is_ok(), "{:?}", again);
        }
    }

    #[test]
    fn damaged_failures_decode_or_fail_cleanly(kind in 0u8..6, flips in flips()) {
        let f = match kind {
            0 => Failure::StaleEpoch(3),
            1 => Failure::TooLarge { kind: LimitKind::BatchAnswerFull, limit: 4, actual: 5 },
            2 => Failure::Invalid("empty key".into()),
            3 => Failure::Unavailable("down".into()),
            4 => Failure::storage(StorageKind::Poisoned, "fsync"),
            _ => Failure::Overloaded,
        };
        let mut message = capnp::message::Builder::new_default();
        f.write(message.init_root::<failure::Builder<'_>>());
        let bytes = damaged(&message, &flips);
        if let Some(m) = read(&bytes)
            && let Ok(f) = m.get_root::<failure::Reader<'_>>()
        {
            let _ = Failure::read(f);
        }
    }
}
