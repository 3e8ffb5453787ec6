//! The store against damaged and old files: torn tails, flipped bytes,
//! random garbage, and the format-v1 fixture in testdata/.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use wimpy_store::io::FaultyDir;
use wimpy_store::{CompactionOptions, Options, Store, StoreError, SyncMode};

fn options() -> Options {
    Options {
        sync: SyncMode::Always,
        segment_bytes: 1 << 20,
        max_value_bytes: 64 << 10,
        // Only explicit checkpoints, so tests know where replay starts.
        checkpoint_every_bytes: u64::MAX,
        compaction: CompactionOptions { enabled: false, ..CompactionOptions::default() },
        ..Options::default()
    }
}

fn value(i: u64) -> Vec<u8> {
    (0..(50 + i % 200)).map(|j| (j ^ i) as u8).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// Opens the store in `dir` through a `FaultyDir`, which holds the
/// directory's lock for as long as the test keeps it.
fn open(dir: &FaultyDir) -> Result<Store, StoreError> {
    Store::open_in(Arc::new(dir.clone()), options())
}

/// Writes keys 0..n, checkpoints, writes n..2n, then crashes: nothing is
/// flushed or checkpointed on the way out. Returns the directory (reset, as
/// after a restart) and the byte offset of every record written after the
/// checkpoint.
fn write_then_crash(path: &Path, n: u64) -> (FaultyDir, Vec<u64>) {
    let faulty = FaultyDir::new(path).unwrap();
    let dir = path;
    let store = open(&faulty).unwrap();
    for i in 0..n {
        store.put(&i.to_be_bytes(), &value(i)).unwrap();
    }
    store.checkpoint().unwrap();
    let seg = segments(dir).pop().unwrap();
    let mut offsets = Vec::new();
    for i in n..2 * n {
        offsets.push(std::fs::metadata(&seg).unwrap().len());
        store.put(&i.to_be_bytes(), &value(i)).unwrap();
    }
    faulty.crash_now();
    drop(store);
    faulty.reset().unwrap();
    (faulty, offsets)
}

#[test]
fn a_torn_tail_is_cut_at_the_last_good_record_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (faulty, _) = write_then_crash(dir.path(), 100);
    // Half of a record: what a crash in the middle of a write leaves.
    let seg = segments(dir.path()).pop().unwrap();
    let good_len = std::fs::metadata(&seg).unwrap().len();
    let mut frame = std::fs::read(&seg).unwrap()[32..32 + 40].to_vec();
    frame.truncate(20);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&frame);
    std::fs::write(&seg, &bytes).unwrap();

    let store = open(&faulty).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.truncations.len(), 1, "{report:?}");
    assert_eq!(report.truncations[0].at, good_len);
    assert_eq!(report.truncations[0].dropped_bytes, 20);
    assert_eq!(report.replayed_records, 100);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    for i in 0..200u64 {
        assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(value(i)), "key {i}");
    }
    store.put(b"new", b"works").unwrap();
    store.close().unwrap();
    let store = open(&faulty).unwrap();
    assert!(store.recovery_report().truncations.is_empty());
    assert_eq!(store.get(b"new").unwrap(), Some(b"works".to_vec()));
}

#[test]
fn a_flipped_byte_after_the_checkpoint_loses_only_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let (faulty, offsets) = write_then_crash(dir.path(), 100);
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Damage the value of record 160 (the 61st after the checkpoint).
    let at = offsets[60] as usize + 30;
    bytes[at] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();

    let store = open(&faulty).unwrap();
    let report = store.recovery_report().clone();
    assert!(report.truncations.is_empty(), "damage with good records behind it is no torn tail: {report:?}");
    assert_eq!(report.damage.len(), 1, "{report:?}");
    let damage = &report.damage[0];
    assert_eq!((damage.at, damage.bytes), (offsets[60], offsets[61] - offsets[60]), "{damage:?}");
    assert!(damage.reason.contains("checksum"), "{damage:?}");
    assert_eq!(report.replayed_records, 99, "every record after the damage is replayed");
    for i in (0..200u64).filter(|&i| i != 160) {
        assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(value(i)), "key {i}");
    }
    assert_eq!(store.get(&160u64.to_be_bytes()).unwrap(), None, "the damaged record is the one lost");
    // The file is not cut, and the next open steps over the same damage.
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), bytes.len() as u64);
    drop(store);
    let store = open(&faulty).unwrap();
    assert_eq!(store.get(&199u64.to_be_bytes()).unwrap(), Some(value(199)));
}

/// Writes `n` keys with the given options and closes the store, then
/// removes the checkpoint, so that opening replays every record.
fn written_without_checkpoint(path: &Path, n: u64, options: &Options) -> Vec<(u64, u64)> {
    let store = Store::open(path, options.clone()).unwrap();
    let mut records = Vec::new();
    for i in 0..n {
        let seg = segments(path).pop().unwrap();
        store.put(&i.to_be_bytes(), &value(i)).unwrap();
        records.push((i, std::fs::metadata(&seg).unwrap().len()));
    }
    store.close().unwrap();
    std::fs::remove_file(path.join("index.ckpt")).unwrap();
    records
}

#[test]
fn a_byte_flipped_anywhere_in_a_segment_loses_at_most_its_record() {
    // A small index, so that new keys after the damage make it grow (which
    // rescans every segment, damage included).
    let options = Options { expected_keys: 64, ..options() };
    for share in [0.1, 0.4, 0.9] {
        let dir = tempfile::tempdir().unwrap();
        let ends = written_without_checkpoint(dir.path(), 600, &options);
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = 32 + ((bytes.len() - 32) as f64 * share) as usize;
        bytes[at] ^= 0x5a;
        std::fs::write(&seg, &bytes).unwrap();
        // The record holding that byte: the first whose end is past it.
        let hit = ends.iter().find(|(_, end)| *end as usize > at).unwrap().0;

        let store = Store::open(dir.path(), options.clone()).unwrap();
        let report = store.recovery_report().clone();
        assert!(!report.checkpoint_used);
        assert!(report.truncations.is_empty(), "{share}: {report:?}");
        assert_eq!(report.damage.len(), 1, "{share}: {report:?}");
        let damage = &report.damage[0];
        assert!(damage.at as usize <= at && at < (damage.at + damage.bytes) as usize, "{share}: {damage:?}");
        let mut lost = Vec::new();
        for i in 0..600u64 {
            match store.get(&i.to_be_bytes()).unwrap() {
                Some(v) => assert_eq!(v, value(i), "{share}: key {i} has another value"),
                None => lost.push(i),
            }
        }
        assert_eq!(lost, vec![hit], "{share}: only the damaged record is lost");
        // New keys: the index grows past its size and keeps every entry.
        let index_before = store.stats().index_bytes;
        for i in 1000..3000u64 {
            store.put(&i.to_be_bytes(), b"after").unwrap();
        }
        assert!(store.stats().index_bytes > index_before, "the index grew");
        for i in (0..600u64).filter(|&i| i != hit) {
            assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(value(i)), "{share}: key {i} after growth");
        }
        assert_eq!(store.get(&2999u64.to_be_bytes()).unwrap(), Some(b"after".to_vec()));
        // A range scan (what a move of a key range reads) steps over it too.
        let scanned: Vec<_> = store.scan(wimpy_keyspace::KeyHashRange::ALL).collect::<Result<_, _>>().unwrap();
        assert_eq!(scanned.len(), 599 + 2000, "{share}");
        store.close().unwrap();
    }
}

#[test]
fn damage_before_the_checkpoint_is_reported_on_read_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (faulty, _) = write_then_crash(dir.path(), 100);
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // The first record (key 0) starts right after the 32-byte header; hit its value.
    bytes[32 + 12 + 8 + 5] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let store = open(&faulty).unwrap();
    let err = store.get(&0u64.to_be_bytes()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { offset: 32, .. }), "{err:?}");
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(store.get(&1u64.to_be_bytes()).unwrap(), Some(value(1)));
    // The damaged record does not pin its key: a new value replaces it.
    store.put(&0u64.to_be_bytes(), b"fresh").unwrap();
    assert_eq!(store.get(&0u64.to_be_bytes()).unwrap(), Some(b"fresh".to_vec()));
    assert!(store.delete(&0u64.to_be_bytes()).unwrap());
    assert_eq!(store.get(&0u64.to_be_bytes()).unwrap(), None);
}

#[test]
fn an_intact_segment_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store.put(b"k", b"v").unwrap();
        store.close().unwrap();
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let newer = wimpy_store::FORMAT_VERSION + 1;
    bytes[8..10].copy_from_slice(&newer.to_le_bytes());
    let crc = crc32c(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let err = Store::open(dir.path(), options()).unwrap_err();
    assert!(matches!(err, StoreError::Format { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("version {newer}")), "{err}");
}

/// CRC32C (Castagnoli), bit by bit: an independent check of the crate the store uses.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// The fixture: 120 keys, some overwritten, some deleted, written by format
/// version 1 with a checkpoint followed by more log. Every later version
/// must open it and read exactly this.
fn fixture_expected() -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    (0..120u64)
        .map(|i| {
            let v = match i % 6 {
                0 => None,
                1 => Some(format!("overwritten-{i}").into_bytes()),
                _ => Some(format!("value-{i}-{}", "x".repeat(i as usize % 17)).into_bytes()),
            };
            (format!("key-{i:03}").into_bytes(), v)
        })
        .collect()
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/store/v1")
}

/// Regenerates testdata/store/v1. Run by hand only when the fixture must be
/// recreated (never for a new format version: v1 must stay as it is).
#[test]
#[ignore = "writes testdata/store/v1; run by hand"]
fn write_v1_fixture() {
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir, options()).unwrap();
    for (i, (k, _)) in fixture_expected().iter().enumerate() {
        store.put(k, format!("value-{i}-{}", "x".repeat(i % 17)).as_bytes()).unwrap();
    }
    store.checkpoint().unwrap();
    for (i, (k, v)) in fixture_expected().iter().enumerate() {
        match (i % 6, v) {
            (0, _) => assert!(store.delete(k).unwrap()),
            (1, Some(v)) => store.put(k, v).unwrap(),
            _ => {}
        }
    }
    // No close: the fixture keeps a log tail after its checkpoint, so opening
    // it exercises both the checkpoint and the roll-forward.
    std::mem::forget(store);
    let _ = std::fs::remove_file(dir.join("LOCK"));
}

#[test]
fn the_format_v1_fixture_still_opens_and_reads_back() {
    let src = fixture_dir();
    let dir = tempfile::tempdir().unwrap();
    let mut files = 0;
    for e in std::fs::read_dir(&src).expect("testdata/store/v1 is missing") {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        files += 1;
    }
    assert!(files >= 2, "fixture should hold a segment and a checkpoint");
    let store = Store::open(dir.path(), options()).unwrap();
    let report = store.recovery_report();
    assert!(report.checkpoint_used, "{report:?}");
    assert!(report.replayed_records > 0, "{report:?}");
    assert!(report.truncations.is_empty(), "{report:?}");
    for (k, v) in fixture_expected() {
        assert_eq!(store.get_versioned(&k).unwrap(), v.map(|v| (v, 0)), "{}", String::from_utf8_lossy(&k));
    }
    assert_eq!(store.max_version(), 0, "version 1 has no versioned records");
    // Versioned writes go on in the same store, and it opens again with
    // both kinds of record and a version 2 checkpoint.
    store.put_versioned(b"key-000", b"now versioned", 41).unwrap();
    store.put_versioned(b"key-new", b"new", 42).unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(store.recovery_report().checkpoint_used);
    assert_eq!(store.get_versioned(b"key-000").unwrap(), Some((b"now versioned".to_vec(), 41)));
    assert_eq!(store.get_versioned(b"key-new").unwrap(), Some((b"new".to_vec(), 42)));
    assert_eq!(store.get_versioned(b"key-001").unwrap(), Some((b"overwritten-1".to_vec(), 0)));
    assert_eq!(store.max_version(), 42);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Bytes flipped anywhere in a replayed log lose at most the records
    /// they hit: every other key reads back its own value, and none reads
    /// another's.
    #[test]
    fn flips_lose_only_the_records_they_hit(flips in proptest::collection::vec((0.0f64..1.0, 1u8..=255), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let ends = written_without_checkpoint(dir.path(), 200, &options());
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let mut hit = std::collections::BTreeSet::new();
        for (share, x) in &flips {
            let at = 32 + ((bytes.len() - 32) as f64 * share) as usize;
            bytes[at] ^= x;
            // The record holding that byte (padding included).
            hit.insert(ends.iter().find(|(_, end)| *end as usize > at).unwrap().0);
        }
        std::fs::write(&seg, &bytes).unwrap();
        let store = Store::open(dir.path(), options()).unwrap();
        for i in 0..200u64 {
            match store.get(&i.to_be_bytes()).unwrap() {
                Some(v) => prop_assert_eq!(v, value(i), "key {}", i),
                None => prop_assert!(hit.contains(&i), "key {} lost, but only {:?} were hit", i, hit),
            }
        }
    }

    /// Whatever bytes the files hold, opening returns a store or an error;
    /// it never panics, and a store it returns answers gets.
    #[test]
    fn opening_never_panics_on_any_file_content(
        segment in proptest::collection::vec(any::<u8>(), 0..4096),
        keep_header in any::<bool>(),
        checkpoint in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..512)),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Start from a real store so that damage lands on plausible bytes.
        {
            let store = Store::open(dir.path(), options()).unwrap();
            for i in 0..20u64 {
                store.put(&i.to_be_bytes(), &value(i)).unwrap();
            }
            store.close().unwrap();
        }
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        if keep_header {
            bytes.truncate(32);
        } else {
            bytes.clear();
        }
        bytes.extend_from_slice(&segment);
        let real = std::fs::read(&seg).unwrap();
        if segment.is_empty() {
            bytes = real;
        }
        for (at, x) in &flips {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
        }
        std::fs::write(&seg, &bytes).unwrap();
        if let Some(c) = checkpoint {
            std::fs::write(dir.path().join("index.ckpt"), c).unwrap();
        }
        if let Ok(store) = Store::open(dir.path(), options()) {
            for i in 0..20u64 {
                let _ = store.get(&i.to_be_bytes());
            }
            let _ = store.put(b"after", b"damage");
        }
    }
}

#[test]
fn a_batch_of_writes_shares_one_fsync_and_fails_together() {
    use wimpy_store::{Applied, Op};
    let tmp = tempfile::tempdir().unwrap();
    let faulty = FaultyDir::new(tmp.path()).unwrap();
    let store = open(&faulty).unwrap();
    store.put(b"before", b"x").unwrap();
    // The first batch may fsync once; the second batch's fsync fails.
    faulty.fail_sync_at(1);
    let first: Vec<Op> = (0..10u64).map(|i| Op::Put(i.to_be_bytes().to_vec(), value(i))).collect();
    let answers = store.apply(&first);
    assert!(answers.iter().all(|a| matches!(a, Ok(Applied::Stored))), "{answers:?}");
    let second = vec![
        Op::Put(b"lost".to_vec(), b"v".to_vec()),
        Op::Get(0u64.to_be_bytes().to_vec()),
        Op::Delete(b"before".to_vec()),
    ];
    let answers = store.apply(&second);
    assert!(matches!(answers[0], Err(StoreError::Poisoned { .. })), "{answers:?}");
    assert_eq!(answers[1].as_ref().unwrap(), &Applied::Value(Some(value(0))), "a read needs no fsync");
    assert!(matches!(answers[2], Err(StoreError::Poisoned { .. })), "{answers:?}");
    drop(store);
    faulty.power_cut().unwrap();
    let store = open(&faulty).unwrap();
    for i in 0..10u64 {
        assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(value(i)), "acknowledged write {i} lost");
    }
    assert_eq!(store.get(b"lost").unwrap(), None);
    assert_eq!(store.get(b"before").unwrap(), Some(b"x".to_vec()));
}

#[test]
fn a_poisoned_store_says_why_and_reopens_in_its_own_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let faulty = FaultyDir::new(tmp.path()).unwrap();
    let store = open(&faulty).unwrap();
    for i in 0..50u64 {
        store.put(&i.to_be_bytes(), &value(i)).unwrap();
    }
    assert_eq!(store.poisoned(), None);
    faulty.fail_sync_at(0);
    assert!(store.put(b"unsure", b"v").is_err());
    let why = store.poisoned().expect("a failed fsync poisons the store");
    assert!(why.contains("injected fsync failure"), "{why}");
    assert!(matches!(store.get(&0u64.to_be_bytes()), Err(StoreError::Poisoned { .. })));
    let dir = store.dir();
    assert!(matches!(store.close(), Err(StoreError::Poisoned { .. })));
    // The directory stays locked between the close and the reopen.
    assert!(matches!(Store::open(tmp.path(), options()), Err(StoreError::Locked { .. })));
    faulty.reset().unwrap();
    let store = Store::open_in(dir, options()).unwrap();
    assert_eq!(store.poisoned(), None);
    for i in 0..50u64 {
        assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(value(i)), "acknowledged write {i} lost");
    }
    store.put(b"after", b"reopen").unwrap();
    assert_eq!(store.get(b"after").unwrap(), Some(b"reopen".to_vec()));
}

#[test]
fn a_record_damaged_after_recovery_stays_corrupt_through_index_growth() {
    // Opened from its checkpoint, the store does not read record 0 again:
    // the index points at it until a read or a rescan finds the damage.
    let options = Options { expected_keys: 64, ..options() };
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        for i in 0..300u64 {
            store.put(&i.to_be_bytes(), &value(i)).unwrap();
        }
        store.close().unwrap();
    }
    let seg = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[32 + 12 + 8 + 5] ^= 0xff; // key 0's value
    std::fs::write(&seg, &bytes).unwrap();
    let store = Store::open(dir.path(), options).unwrap();
    assert!(store.recovery_report().checkpoint_used);
    let before = store.stats().index_bytes;
    for i in 1000..4000u64 {
        store.put(&i.to_be_bytes(), b"grow").unwrap();
    }
    assert!(store.stats().index_bytes > before, "the index grew, rescanning the damaged segment");
    // Still a corrupt record, not a missing key; the others are all there.
    assert!(matches!(store.get(&0u64.to_be_bytes()), Err(StoreError::Corrupt { offset: 32, .. })));
    for i in 1..300u64 {
        assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(value(i)), "key {i}");
    }
}
