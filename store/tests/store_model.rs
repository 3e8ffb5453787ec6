//! Model-based tests: random operation sequences run against the store and
//! against a BTreeMap, with I/O failures injected through `FaultyDir`.
//!
//! After an injected failure the store must refuse every call (poisoned),
//! and after a power cut or process crash and a reopen it must hold exactly
//! the state of some prefix of the history: with sync=always, everything
//! acknowledged; with other modes, at least everything before the last flush.
//! Writes carry versions (0 or not), and a key's version is part of the
//! state compared.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use wimpy_store::io::FaultyDir;
use wimpy_store::{CompactionOptions, Options, Store, StoreError, SyncMode};

/// Each live key's value and version.
type Model = BTreeMap<u8, (Vec<u8>, u64)>;

#[derive(Clone, Debug)]
enum Op {
    /// Key, value length, value seed, version (0: none).
    Put(u8, usize, u8, u64),
    /// Key, version.
    Delete(u8, u64),
    Get(u8),
    Compact,
    Checkpoint,
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![8 => 0usize..200, 2 => 1000usize..40_000];
    let version = || prop_oneof![Just(0u64), 1u64..=u64::MAX];
    prop_oneof![
        30 => (0u8..48, len, any::<u8>(), version()).prop_map(|(k, l, b, v)| Op::Put(k, l, b, v)),
        8 => (0u8..48, version()).prop_map(|(k, v)| Op::Delete(k, v)),
        10 => (0u8..48).prop_map(Op::Get),
        2 => Just(Op::Compact),
        1 => Just(Op::Checkpoint),
        2 => Just(Op::Flush),
        2 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The n-th write from the fault point tears and the process dies.
    Write(u64),
    /// The n-th fsync from the fault point fails.
    Sync(u64),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![(0u64..12).prop_map(Fault::Write), (0u64..6).prop_map(Fault::Sync)]
}

fn sync_mode() -> impl Strategy<Value = SyncMode> {
    prop_oneof![
        Just(SyncMode::Always),
        Just(SyncMode::Never),
        Just(SyncMode::Interval(std::time::Duration::from_secs(3600)))
    ]
}

fn options(sync: SyncMode) -> Options {
    Options {
        sync,
        segment_bytes: 1 << 20,
        max_value_bytes: 64 << 10,
        expected_keys: 8,
        // Background work would consume planned faults at random moments.
        checkpoint_every_bytes: u64::MAX,
        compaction: CompactionOptions { enabled: false, ..CompactionOptions::default() },
        ..Options::default()
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k:03}").into_bytes()
}

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn open(dir: &FaultyDir, sync: SyncMode) -> Store {
    try_open(dir, sync).expect("open")
}

fn try_open(dir: &FaultyDir, sync: SyncMode) -> Result<Store, StoreError> {
    Store::open_in(Arc::new(dir.clone()), options(sync))
}

fn assert_matches_model(store: &Store, model: &Model) {
    for k in 0..48u8 {
        assert_eq!(store.get_versioned(&key(k)).unwrap(), model.get(&k).cloned(), "key {k}");
    }
    assert_eq!(store.stats().live_keys, model.len() as u64);
    let live_max = model.values().map(|(_, v)| *v).max().unwrap_or(0);
    assert!(store.max_version() >= live_max, "max version {} below a live one, {live_max}", store.max_version());
}

/// Reads every key the model may hold into a model-shaped map.
fn read_back(store: &Store) -> Model {
    (0..48u8).filter_map(|k| store.get_versioned(&key(k)).unwrap().map(|v| (k, v))).collect()
}

/// Applies `op`; `Err` when the store refused or failed. A failed reopen
/// leaves `slot` empty.
fn apply(
    slot: &mut Option<Store>,
    dir: &FaultyDir,
    sync: SyncMode,
    op: &Op,
    model: &mut Model,
) -> Result<(), StoreError> {
    if let Op::Reopen = op {
        // Close before opening again: two stores must never share a directory.
        if let Some(old) = slot.take() {
            old.close()?;
        }
        *slot = Some(try_open(dir, sync)?);
        return Ok(());
    }
    let store = slot.as_ref().expect("store is open");
    match op {
        Op::Put(k, len, seed, version) => {
            let v = value(*len, *seed);
            store.put_versioned(&key(*k), &v, *version)?;
            model.insert(*k, (v, *version));
        }
        Op::Delete(k, version) => {
            let was = store.delete_versioned(&key(*k), *version)?;
            assert_eq!(was, model.remove(k).is_some(), "delete of key {k} said {was}");
        }
        Op::Get(k) => {
            let got = store.get_versioned(&key(*k))?;
            assert_eq!(got, model.get(k).cloned(), "get of key {k}");
        }
        Op::Compact => {
            store.compact()?;
        }
        Op::Checkpoint => store.checkpoint()?,
        Op::Flush => store.flush()?,
        Op::Reopen => unreachable!("handled above"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    /// Without faults the store is the model, across compactions and reopens.
    #[test]
    fn store_behaves_like_a_map(ops in proptest::collection::vec(op(), 1..150), sync in sync_mode()) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = FaultyDir::new(tmp.path()).unwrap();
        let mut store = Some(open(&dir, sync));
        let mut model = Model::new();
        for op in &ops {
            apply(&mut store, &dir, sync, op, &mut model).unwrap();
        }
        let store = store.unwrap();
        assert_matches_model(&store, &model);
        store.close().unwrap();
        let store = open(&dir, sync);
        assert_matches_model(&store, &model);
    }

    /// An injected write or fsync failure poisons the store; after a crash
    /// (with or without losing unsynced data) the reopened store holds the
    /// state of a prefix of the history that includes every durable write.
    #[test]
    fn after_a_fault_the_store_recovers_a_durable_prefix(
        before in proptest::collection::vec(op(), 0..60),
        after in proptest::collection::vec(op(), 1..60),
        fault in fault(),
        sync in sync_mode(),
        lose_unsynced in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = FaultyDir::new(tmp.path()).unwrap();
        let mut store = Some(open(&dir, sync));
        let mut model = Model::new();
        // history[i] is the model after i operations; durable_from is the
        // earliest history entry a recovery may return.
        let mut history = vec![model.clone()];
        let mut durable_from = 0;
        for op in &before {
            apply(&mut store, &dir, sync, op, &mut model).unwrap();
            history.push(model.clone());
            if sync == SyncMode::Always || matches!(op, Op::Flush | Op::Reopen | Op::Checkpoint) {
                durable_from = history.len() - 1;
            }
        }
        match fault {
            Fault::Write(n) => dir.fail_write_at(n),
            Fault::Sync(n) => dir.fail_sync_at(n),
        }
        let mut failed = false;
        for op in &after {
            let mut next = model.clone();
            match apply(&mut store, &dir, sync, op, &mut next) {
                Ok(()) => {
                    model = next;
                    history.push(model.clone());
                    if sync == SyncMode::Always || matches!(op, Op::Flush | Op::Reopen | Op::Checkpoint) {
                        durable_from = history.len() - 1;
                    }
                }
                Err(e) => {
                    // The failed operation may or may not have taken effect.
                    let mut effect = model.clone();
                    if let Op::Put(k, len, seed, version) = op {
                        effect.insert(*k, (value(*len, *seed), *version));
                    } else if let Op::Delete(k, _) = op {
                        effect.remove(k);
                    }
                    history.push(effect);
                    prop_assert!(
                        matches!(e, StoreError::Poisoned { .. } | StoreError::Io { .. }),
                        "unexpected error {e:?}"
                    );
                    if let Some(store) = &store {
                        let again = store.get(&key(0));
                        prop_assert!(matches!(again, Err(StoreError::Poisoned { .. })), "store not poisoned: {again:?}");
                    }
                    failed = true;
                    break;
                }
            }
        }
        drop(store);
        if lose_unsynced { dir.power_cut().unwrap() } else { dir.reset().unwrap() }
        let store = open(&dir, sync);
        let got = read_back(&store);
        let start = if failed { durable_from } else { durable_from.min(history.len() - 1) };
        let ok = history[start..].contains(&got);
        prop_assert!(ok, "recovered state is not a prefix state at or after op {}: {:?}\nreport: {:?}",
            start, got.keys().collect::<Vec<_>>(), store.recovery_report());
        // And it keeps working.
        store.put(b"after", b"recovery").unwrap();
        prop_assert_eq!(store.get(b"after").unwrap(), Some(b"recovery".to_vec()));
    }
}
