//! A reader in another language tells every refusal apart from the union
//! alone. The reader is Cap'n Proto's own C++ tool (`capnp decode`, which
//! scripts/setup installs with the compiler): it gets the bytes the nodes
//! send, written by the same code, and knows nothing but the schema text.

use std::io::Write;
use std::process::{Command, Stdio};

use wimpy_schema::batch::{KeyAnswer, write_answers};
use wimpy_schema::wimpy_capnp::{failure, key_op_result};
use wimpy_schema::{ComputeFailure, ComputeFailureKind, Failure, LimitKind, StorageKind};

/// This schema, as the nodes speak it.
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wimpy.capnp");

/// The schema of version 1, as clients written against it know it.
const SCHEMA_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/schema/wimpy-v1.capnp");

/// `message` as `capnp decode` prints it, read as a `root` of the schema.
fn decode(message: &capnp::message::Builder<capnp::message::HeapAllocator>, root: &str) -> String {
    decode_with(SCHEMA, message, root)
}

/// `message` as `capnp decode` prints it, read as a `root` of `schema`.
fn decode_with(schema: &str, message: &capnp::message::Builder<capnp::message::HeapAllocator>, root: &str) -> String {
    let mut child = Command::new("capnp")
        .args(["decode", "--short", schema, root])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the capnp tool (scripts/setup installs it)");
    let mut bytes = Vec::new();
    capnp::serialize::write_message(&mut bytes, message).unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "capnp decode: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn failure_message(f: &Failure) -> capnp::message::Builder<capnp::message::HeapAllocator> {
    let mut message = capnp::message::Builder::new_default();
    f.write(message.init_root::<failure::Builder<'_>>());
    message
}

fn failure_text(f: &Failure) -> String {
    decode(&failure_message(f), "Failure")
}

#[test]
fn a_reader_of_schema_version_1_reads_the_new_failures_as_it_did() {
    let cases: Vec<(Failure, &str)> = vec![
        (
            Failure::TooLarge { kind: LimitKind::BatchAnswerFull, limit: 4, actual: 5 },
            r#"(tooLarge = (what = "batch answer", limit = 4, actual = 5))"#,
        ),
        (
            Failure::TooLarge { kind: LimitKind::ValueNeedsStream, limit: 1, actual: 2 },
            r#"(tooLarge = (what = "value (use getStream)", limit = 1, actual = 2))"#,
        ),
        (Failure::TooLarge { kind: LimitKind::Result, limit: 1, actual: 2 }, r#"what = "result""#),
        (Failure::storage(StorageKind::Full, "disk full"), r#"(storage = "disk full")"#),
        (Failure::StaleEpoch(3), "(staleEpoch = 3)"),
    ];
    for (f, expected) in &cases {
        let text = decode_with(SCHEMA_V1, &failure_message(f), "Failure");
        assert!(text.contains(expected), "a version 1 reader sees {f:?} as {text}, not {expected}");
    }
}

#[test]
fn every_refusal_reads_as_its_own_union_member_and_kind() {
    let cases: Vec<(Failure, &str)> = vec![
        (Failure::StaleEpoch(7), "(staleEpoch = 7)"),
        (
            Failure::TooLarge { kind: LimitKind::Key, limit: 4096, actual: 5000 },
            r#"(tooLarge = (what = "key", limit = 4096, actual = 5000, kind = key))"#,
        ),
        (Failure::TooLarge { kind: LimitKind::Value, limit: 1, actual: 2 }, "kind = value)"),
        (Failure::TooLarge { kind: LimitKind::ValueNeedsStream, limit: 1, actual: 2 }, "kind = valueNeedsStream)"),
        (Failure::TooLarge { kind: LimitKind::BatchAnswerFull, limit: 1, actual: 2 }, "kind = batchAnswerFull)"),
        (Failure::TooLarge { kind: LimitKind::Result, limit: 1, actual: 2 }, "kind = result)"),
        (Failure::Invalid("empty key".into()), r#"(invalid = "empty key")"#),
        (Failure::Unavailable("worker 3 is down".into()), r#"(unavailable = "worker 3 is down")"#),
        (Failure::Overloaded, "(overloaded = void)"),
        (Failure::storage(StorageKind::Io, "read failed"), r#"(storage = (message = "read failed", kind = io))"#),
        (Failure::storage(StorageKind::Full, "disk full"), "kind = full))"),
        (Failure::storage(StorageKind::Poisoned, "fsync failed"), "kind = poisoned))"),
        (Failure::storage(StorageKind::Corrupt, "bad CRC"), "kind = corrupt))"),
        (
            Failure::Compute(ComputeFailure {
                kind: ComputeFailureKind::TooManyPixels,
                message: "too many".into(),
                limit: 10,
                actual: 20,
            }),
            r#"(compute = (kind = tooManyPixels, message = "too many", limit = 10, actual = 20))"#,
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (f, expected) in &cases {
        let text = failure_text(f);
        assert!(text.contains(expected), "{f:?} reads as {text}, not {expected}");
        assert!(seen.insert(text.clone()), "{f:?} reads like another refusal: {text}");
    }
}

#[test]
fn a_full_batch_answer_reads_as_such_where_the_batch_codec_writes_it() {
    // Five values just under 1 MiB: four fill the 4 MiB answer, the fifth
    // does not fit.
    let value = vec![7u8; (1 << 20) - 1];
    let answers: Vec<KeyAnswer> = (0..5).map(|_| KeyAnswer::Value(value.clone())).collect();
    let mut batch = capnp::message::Builder::new_default();
    let mut root = batch.init_root::<capnp::any_pointer::Builder<'_>>();
    write_answers(root.reborrow().initn_as::<capnp::struct_list::Builder<'_, key_op_result::Owned>>(5), answers);
    let list = root.into_reader().get_as::<capnp::struct_list::Reader<'_, key_op_result::Owned>>().unwrap();
    // `capnp decode` reads a struct root: the fifth answer, in a message of its own.
    let mut fifth = capnp::message::Builder::new_default();
    fifth.set_root(list.get(4)).unwrap();
    let text = decode(&fifth, "KeyOpResult");
    assert!(text.starts_with("(failure = (tooLarge = ("), "{text}");
    assert!(text.contains("kind = batchAnswerFull"), "{text}");
}
