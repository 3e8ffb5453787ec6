//! Behaviour of the store through its public API, on real files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wimpy_keyspace::{KeyHashRange, key_hash};
use wimpy_store::{CompactionOptions, Options, Store, StoreError, SyncMode};

/// Small segments so that a few thousand keys span many of them.
fn small() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_bytes: 1 << 20,
        max_value_bytes: 64 << 10,
        expected_keys: 64,
        compaction: CompactionOptions { enabled: false, ..CompactionOptions::default() },
        ..Options::default()
    }
}

fn value(i: u64, round: u64) -> Vec<u8> {
    let len = 1 + (i * 37 + round * 11) % 700;
    (0..len).map(|j| (i ^ j ^ round) as u8).collect()
}

#[test]
fn put_get_overwrite_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small()).unwrap();
    assert_eq!(store.get(b"a").unwrap(), None);
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"").unwrap();
    assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(store.get(b"b").unwrap().as_deref(), Some(&b""[..]));
    store.put(b"a", b"22").unwrap();
    assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"22"[..]));
    assert!(store.delete(b"a").unwrap());
    assert!(!store.delete(b"a").unwrap());
    assert_eq!(store.get(b"a").unwrap(), None);
    assert_eq!(store.stats().live_keys, 1);
}

#[test]
fn limits_are_typed_errors_that_name_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { max_key_bytes: 8, max_value_bytes: 16, ..small() };
    let store = Store::open(dir.path(), opts).unwrap();
    assert!(matches!(store.put(b"", b"x"), Err(StoreError::KeyTooLarge { len: 0, max: 8 })));
    assert!(matches!(store.put(b"123456789", b"x"), Err(StoreError::KeyTooLarge { len: 9, max: 8 })));
    assert!(matches!(store.get(b"123456789"), Err(StoreError::KeyTooLarge { .. })));
    let err = store.put(b"k", &[0; 17]).unwrap_err();
    assert!(matches!(err, StoreError::ValueTooLarge { len: 17, max: 16 }));
    assert!(err.to_string().contains("16"), "{err}");
    store.put(b"k", &[0; 16]).unwrap();
    assert_eq!(store.stats().live_keys, 1);
}

#[test]
fn many_keys_across_segments_and_index_growth_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let store = Store::open(dir.path(), small()).unwrap();
        for i in 0..20_000u64 {
            let k = format!("key-{i}").into_bytes();
            let v = value(i, 0);
            store.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        for i in (0..20_000u64).step_by(3) {
            let k = format!("key-{i}").into_bytes();
            if i % 2 == 0 {
                store.delete(&k).unwrap();
                model.remove(&k);
            } else {
                let v = value(i, 1);
                store.put(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        let stats = store.stats();
        assert_eq!(stats.live_keys, model.len() as u64);
        assert!(stats.segments > 3, "expected several segments, got {}", stats.segments);
        for (k, v) in &model {
            assert_eq!(store.get(k).unwrap().as_ref(), Some(v));
        }
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), small()).unwrap();
    assert!(store.recovery_report().checkpoint_used);
    assert_eq!(store.recovery_report().replayed_records, 0);
    assert_eq!(store.stats().live_keys, model.len() as u64);
    for (k, v) in &model {
        assert_eq!(store.get(k).unwrap().as_ref(), Some(v), "{}", String::from_utf8_lossy(k));
    }
}

#[test]
fn reopen_without_a_checkpoint_rolls_forward_over_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small()).unwrap();
        for i in 0..5000u64 {
            store.put(&i.to_le_bytes(), &value(i, 0)).unwrap();
        }
        store.close().unwrap();
    }
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let store = Store::open(dir.path(), small()).unwrap();
    let report = store.recovery_report();
    assert!(!report.checkpoint_used);
    assert_eq!(report.replayed_records, 5000);
    for i in 0..5000u64 {
        assert_eq!(store.get(&i.to_le_bytes()).unwrap(), Some(value(i, 0)));
    }
}

/// Version `i` of key `i % 700` in the versioned tests: every key
/// written several times, versions rising, some deleted at the end.
fn versioned_writes(store: &Store, n: u64) {
    for i in 1..=n {
        store.put_versioned(&(i % 700).to_le_bytes(), &value(i, 0), i).unwrap();
    }
    for k in (0..700u64).step_by(7) {
        assert!(store.delete_versioned(&k.to_le_bytes(), n + 1 + k).unwrap());
    }
}

/// What [`versioned_writes`] leaves: each key's last value and version.
fn check_versioned(store: &Store, n: u64, how: &str) {
    for k in 0..700u64 {
        let last = (1..=n).rev().find(|i| i % 700 == k).unwrap();
        let expected = (k % 7 != 0).then(|| (value(last, 0), last));
        assert_eq!(store.get_versioned(&k.to_le_bytes()).unwrap(), expected, "{how}: key {k}");
    }
    assert_eq!(store.max_version(), n + 1 + 693, "{how}: the last delete's version (key 693)");
}

#[test]
fn versions_are_kept_through_checkpoints_replay_compaction_and_moves() {
    let dir = tempfile::tempdir().unwrap();
    let n = 5000;
    {
        let store = Store::open(dir.path().join("a"), small()).unwrap();
        assert_eq!(store.max_version(), 0);
        store.put(b"plain", b"no version").unwrap();
        versioned_writes(&store, n);
        assert_eq!(store.get_versioned(b"plain").unwrap(), Some((b"no version".to_vec(), 0)));
        check_versioned(&store, n, "written");
        assert!(store.compact().unwrap().segments_compacted > 0);
        check_versioned(&store, n, "compacted");
        store.close().unwrap();
    }
    let store = Store::open(dir.path().join("a"), small()).unwrap();
    assert!(store.recovery_report().checkpoint_used);
    check_versioned(&store, n, "reopened from the checkpoint");
    store.close().unwrap();
    std::fs::remove_file(dir.path().join("a/index.ckpt")).unwrap();
    let store = Store::open(dir.path().join("a"), small()).unwrap();
    assert!(!store.recovery_report().checkpoint_used);
    check_versioned(&store, n, "rebuilt from the log");

    // A range stream carries the versions to the other store.
    let mut frames = Vec::new();
    for r in store.scan(KeyHashRange::ALL) {
        wimpy_store::encode_stream_record(&mut frames, &r.unwrap());
    }
    let other = Store::open(dir.path().join("b"), small()).unwrap();
    other.merge(wimpy_store::RecordStreamReader::new(&frames[..], 4096, 64 << 10)).unwrap();
    for k in (0..700u64).filter(|k| k % 7 != 0) {
        assert_eq!(other.get_versioned(&k.to_le_bytes()).unwrap(), store.get_versioned(&k.to_le_bytes()).unwrap());
    }
    assert_eq!(other.max_version(), n, "the highest live version");
}

#[test]
fn a_damaged_checkpoint_is_rejected_and_the_log_replayed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small()).unwrap();
        for i in 0..3000u64 {
            store.put(&i.to_le_bytes(), &value(i, 0)).unwrap();
        }
        store.close().unwrap();
    }
    let path = dir.path().join("index.ckpt");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let store = Store::open(dir.path(), small()).unwrap();
    let report = store.recovery_report();
    assert!(!report.checkpoint_used);
    assert!(report.checkpoint_rejected.as_deref().unwrap().contains("checksum"));
    for i in 0..3000u64 {
        assert_eq!(store.get(&i.to_le_bytes()).unwrap(), Some(value(i, 0)));
    }
}

#[test]
fn compaction_reclaims_overwritten_and_deleted_space() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small()).unwrap();
    for round in 0..5 {
        for i in 0..2000u64 {
            store.put(&i.to_le_bytes(), &value(i, round)).unwrap();
        }
    }
    for i in (0..2000u64).filter(|i| i % 4 == 0) {
        store.delete(&i.to_le_bytes()).unwrap();
    }
    let before = store.stats();
    assert!(before.garbage_bytes > before.log_bytes / 2, "{before:?}");
    let report = store.compact().unwrap();
    let after = store.stats();
    assert!(report.segments_compacted > 0);
    assert!(after.log_bytes < before.log_bytes / 2, "before {before:?} after {after:?} {report:?}");
    assert_eq!(after.live_keys, 1500);
    for i in 0..2000u64 {
        let want = (i % 4 != 0).then(|| value(i, 4));
        assert_eq!(store.get(&i.to_le_bytes()).unwrap(), want, "key {i}");
    }
    drop(store);
    let store = Store::open(dir.path(), small()).unwrap();
    for i in 0..2000u64 {
        let want = (i % 4 != 0).then(|| value(i, 4));
        assert_eq!(store.get(&i.to_le_bytes()).unwrap(), want, "key {i} after reopen");
    }
}

#[test]
fn background_compaction_keeps_the_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        compaction: CompactionOptions {
            enabled: true,
            garbage_ratio: 0.3,
            min_segment_garbage: 0.2,
            bytes_per_second: None,
        },
        ..small()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    // 200 keys of ~4 KiB rewritten 100 times: 80 MiB written, under 1 MiB live.
    for round in 0..100u64 {
        for i in 0..200u64 {
            store.put(&i.to_le_bytes(), &vec![round as u8; 4096]).unwrap();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.stats().log_bytes > 8 << 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stats = store.stats();
    assert!(stats.log_bytes <= 8 << 20, "background compaction left {stats:?}");
    for i in 0..200u64 {
        assert_eq!(store.get(&i.to_le_bytes()).unwrap(), Some(vec![99; 4096]));
    }
}

#[test]
fn gets_run_beside_a_put_stream_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), small()).unwrap());
    // Stable keys that readers check throughout; churn keys make garbage.
    for i in 0..1000u64 {
        store.put(format!("stable-{i}").as_bytes(), &value(i, 7)).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..1000u64 {
                        let got = store.get(format!("stable-{i}").as_bytes()).unwrap();
                        assert_eq!(got, Some(value(i, 7)), "stable-{i}");
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for round in 0..20u64 {
                for i in 0..1000u64 {
                    store.put(format!("churn-{i}").as_bytes(), &value(i, round)).unwrap();
                }
            }
        })
    };
    for _ in 0..5 {
        store.compact().unwrap();
    }
    writer.join().unwrap();
    store.compact().unwrap();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    for i in 0..1000u64 {
        assert_eq!(store.get(format!("churn-{i}").as_bytes()).unwrap(), Some(value(i, 19)));
    }
}

#[test]
fn split_streams_a_hash_range_and_merge_takes_it_in() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("a"), small()).unwrap();
    for i in 0..3000u64 {
        source.put(&i.to_le_bytes(), &value(i, 0)).unwrap();
    }
    for i in 0..3000u64 {
        if i % 5 == 0 {
            source.delete(&i.to_le_bytes()).unwrap();
        } else if i % 5 == 1 {
            source.put(&i.to_le_bytes(), &value(i, 1)).unwrap();
        }
    }
    let range = KeyHashRange::new(u64::MAX / 4 * 3, u64::MAX / 4);
    let mut frames = Vec::new();
    let mut sent = 0;
    for r in source.scan(range) {
        wimpy_store::encode_stream_record(&mut frames, &r.unwrap());
        sent += 1;
    }
    let target = Store::open(dir.path().join("b"), small()).unwrap();
    let reader = wimpy_store::RecordStreamReader::new(&frames[..], 4096, 64 << 10);
    assert_eq!(target.merge(reader).unwrap(), sent);
    let mut expected = 0;
    for i in 0..3000u64 {
        let k = i.to_le_bytes();
        let live = i % 5 != 0;
        let want = live.then(|| value(i, u64::from(i % 5 == 1)));
        if range.contains(key_hash(&k)) {
            assert_eq!(target.get(&k).unwrap(), want, "key {i}");
            expected += u64::from(live);
        } else {
            assert_eq!(target.get(&k).unwrap(), None, "key {i} is outside the range");
        }
    }
    assert_eq!(sent, expected);
    assert!(expected > 1000, "the range should hold about half the keys");
}

/// Streams `records` through frames into `target`, as a range move does.
fn merge_through_frames(target: &Store, records: impl Iterator<Item = wimpy_store::Result<wimpy_store::Record>>) {
    let mut frames = Vec::new();
    for r in records {
        wimpy_store::encode_stream_record(&mut frames, &r.unwrap());
    }
    target.merge(wimpy_store::RecordStreamReader::new(&frames[..], 4096, 64 << 10)).unwrap();
}

#[test]
fn a_copy_then_the_writes_after_its_version_leave_the_target_as_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("a"), small()).unwrap();
    let mut version = 0;
    let mut next = || {
        version += 1;
        version
    };
    for i in 0..2000u64 {
        source.put_versioned(&i.to_le_bytes(), &value(i, 0), next()).unwrap();
    }
    let range = KeyHashRange::new(u64::MAX / 4 * 3, u64::MAX / 4);
    // The first pass: every live record, and what the copy's keys were
    // before (stale ones the pass replaces, one it never hears of).
    let target = Store::open(dir.path().join("b"), small()).unwrap();
    let cut = source.max_version();
    merge_through_frames(&target, source.scan_ranges(vec![range]));
    // Writes since: overwrites, deletes, deletes of keys put again, new keys.
    for i in 0..2500u64 {
        let k = i.to_le_bytes();
        match i % 6 {
            0 => source.put_versioned(&k, &value(i, 1), next()).map(drop).unwrap(),
            1 => source.delete_versioned(&k, next()).map(drop).unwrap(),
            2 => {
                source.delete_versioned(&k, next()).unwrap();
                source.put_versioned(&k, &value(i, 2), next()).unwrap();
            }
            _ if i >= 2000 => source.put_versioned(&k, &value(i, 3), next()).unwrap(),
            _ => {}
        }
    }
    // Compaction moves records between the passes: the second must not
    // care where they are.
    source.compact().unwrap();
    let (mut changed, mut unchanged) = (Vec::new(), std::collections::HashSet::new());
    for found in source.scan_ranges_after(vec![range], cut) {
        match found.unwrap() {
            wimpy_store::Scanned::Changed(r) => changed.push(r),
            wimpy_store::Scanned::Unchanged { hash, .. } => _ = unchanged.insert(hash),
        }
    }
    assert!(changed.iter().all(|r| r.version > cut), "only writes after the cut come whole");
    let in_range = |i: &u64| range.contains(key_hash(&i.to_le_bytes()));
    let untouched = (0..2000u64).filter(|i| matches!(i % 6, 3..=5) && in_range(i)).count();
    assert_eq!(unchanged.len(), untouched, "every live key untouched since the cut comes as its hash");
    // The receiver's side: the changes, then the range's other keys go.
    let live: std::collections::HashSet<u64> =
        changed.iter().map(|r| key_hash(&r.key)).chain(unchanged.iter().copied()).collect();
    merge_through_frames(&target, changed.into_iter().map(Ok));
    let stale: Vec<_> =
        target.scan_ranges(vec![range]).map(Result::unwrap).filter(|r| !live.contains(&key_hash(&r.key))).collect();
    assert!(!stale.is_empty(), "keys deleted since the cut are among the copy's");
    for r in stale {
        target.delete(&r.key).unwrap();
    }
    let mut checked = 0;
    for i in 0..2500u64 {
        let k = i.to_le_bytes();
        if range.contains(key_hash(&k)) {
            assert_eq!(target.get_versioned(&k).unwrap(), source.get_versioned(&k).unwrap(), "key {i}");
            checked += 1;
        } else {
            assert_eq!(target.get(&k).unwrap(), None, "key {i} is outside the range");
        }
    }
    assert!(checked > 1000, "the range should hold about half the keys");
}

/// `n` equal ranges covering the hash space.
fn equal_ranges(n: u64) -> Vec<KeyHashRange> {
    let step = u64::MAX / n + 1;
    (0..n).map(|i| KeyHashRange::new(i * step, if i + 1 == n { 0 } else { (i + 1) * step })).collect()
}

#[test]
fn digests_find_a_record_damaged_on_disk_and_a_newer_only_merge_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) =
        (Store::open(dir.path().join("a"), small()).unwrap(), Store::open(dir.path().join("b"), small()).unwrap());
    for i in 0..1000u64 {
        for s in [&a, &b] {
            s.put_versioned(&i.to_le_bytes(), &value(i, 0), i + 1).unwrap();
        }
    }
    let ranges = equal_ranges(16);
    assert_eq!(a.digest_ranges(&ranges).unwrap(), b.digest_ranges(&ranges).unwrap());
    // One newer version: only its range's digest differs.
    b.put_versioned(&7u64.to_le_bytes(), &value(7, 1), 5000).unwrap();
    let differing = |a: &Store, b: &Store| -> Vec<usize> {
        let (da, db) = (a.digest_ranges(&ranges).unwrap(), b.digest_ranges(&ranges).unwrap());
        (0..ranges.len()).filter(|&i| da[i] != db[i]).collect()
    };
    let at = ranges.iter().position(|r| r.contains(key_hash(&7u64.to_le_bytes()))).unwrap();
    assert_eq!(differing(&a, &b), [at]);
    a.put_versioned(&7u64.to_le_bytes(), &value(7, 1), 5000).unwrap();
    assert!(differing(&a, &b).is_empty());
    // A byte of a value flipped on b's disk while it runs.
    b.flush().unwrap();
    let seg = std::fs::read_dir(dir.path().join("b"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let victim = 500u64;
    let needle = [&victim.to_le_bytes()[..], &value(victim, 0)[..16]].concat();
    let found = bytes.windows(needle.len()).position(|w| w == needle).expect("the record is in the log");
    bytes[found + needle.len()] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    assert!(b.get(&victim.to_le_bytes()).is_err(), "the damage is caught on read");
    let at = ranges.iter().position(|r| r.contains(key_hash(&victim.to_le_bytes()))).unwrap();
    assert_eq!(differing(&a, &b), [at], "the damaged record counts as absent");
    // The other copy's records of that range repair it; older ones change
    // nothing (b's key 7 stays at its version).
    let repaired = b.merge_newer(a.scan_ranges(vec![ranges[at]])).unwrap();
    assert_eq!(repaired, 1, "the damaged record, and nothing else");
    assert_eq!(b.merge_newer(a.scan_ranges(ranges.clone())).unwrap(), 0, "nothing newer is left to take");
    assert!(differing(&a, &b).is_empty());
    for i in 0..1000u64 {
        assert_eq!(b.get_versioned(&i.to_le_bytes()).unwrap(), a.get_versioned(&i.to_le_bytes()).unwrap(), "key {i}");
    }
}

#[test]
fn sync_always_with_concurrent_writers_acknowledges_everything() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { sync: SyncMode::Always, ..small() };
    let store = Arc::new(Store::open(dir.path(), opts).unwrap());
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    store.put(format!("{t}-{i}").as_bytes(), &value(i, t)).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    drop(store);
    let store = Store::open(dir.path(), small()).unwrap();
    for t in 0..4u64 {
        for i in 0..200u64 {
            assert_eq!(store.get(format!("{t}-{i}").as_bytes()).unwrap(), Some(value(i, t)));
        }
    }
}

#[test]
fn a_directory_holds_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path(), small()).unwrap();
    let err = Store::open(dir.path(), small()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("in use"), "{err}");
    first.close().unwrap();
    Store::open(dir.path(), small()).unwrap();
}

#[test]
fn compaction_requested_during_a_scan_on_the_same_thread_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small()).unwrap();
    for round in 0..3 {
        for i in 0..2000u64 {
            store.put(&i.to_le_bytes(), &value(i, round)).unwrap();
        }
    }
    let mut scan = store.scan(KeyHashRange::ALL);
    let first = scan.next().unwrap().unwrap();
    // Compaction must not move records behind a running scan; it gives up
    // on this round rather than wait for a scan it would never see finish.
    let report = store.compact().unwrap();
    assert_eq!(report.segments_compacted, 0);
    let rest = scan.count() + 1;
    assert_eq!(rest, 2000, "scan saw {rest} keys; first was {:?}", first.key);
    assert!(store.compact().unwrap().segments_compacted > 0);
}

#[test]
fn apply_runs_operations_in_order_each_with_its_own_answer() {
    use wimpy_store::{Applied, Op};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small()).unwrap();
    let k = |s: &str| s.as_bytes().to_vec();
    let ops = vec![
        Op::Put(k("a"), k("1")),
        Op::Get(k("a")),
        Op::Put(k("a"), k("2")),
        Op::Get(k("a")),
        Op::Delete(k("a")),
        Op::Delete(k("a")),
        Op::Get(k("a")),
        Op::Put(Vec::new(), k("x")),
        Op::Put(k("b"), vec![0; (64 << 10) + 1]),
        Op::Put(k("c"), k("3")),
    ];
    let answers = store.apply(&ops);
    assert_eq!(answers.len(), ops.len());
    let ok: Vec<Option<Applied>> = answers.iter().map(|a| a.as_ref().ok().cloned()).collect();
    assert_eq!(
        ok,
        vec![
            Some(Applied::Stored),
            Some(Applied::Value(Some(k("1")))),
            Some(Applied::Stored),
            Some(Applied::Value(Some(k("2")))),
            Some(Applied::Deleted(true)),
            Some(Applied::Deleted(false)),
            Some(Applied::Value(None)),
            None,
            None,
            Some(Applied::Stored),
        ]
    );
    assert!(matches!(answers[7], Err(StoreError::KeyTooLarge { len: 0, .. })));
    assert!(matches!(answers[8], Err(StoreError::ValueTooLarge { .. })));
    assert_eq!(store.get(b"c").unwrap(), Some(k("3")));
    assert_eq!(store.get(b"b").unwrap(), None);
    assert_eq!(store.stats().live_keys, 1);
}
