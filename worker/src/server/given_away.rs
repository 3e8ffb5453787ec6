//! Dropping the keys of ranges given away, without dropping what has been
//! copied back in the meantime.
//!
//! A worker deletes the keys of ranges a ring gives away once the master
//! confirms that ring (see [`super::WorkerState::confirm_epoch`]), in the
//! background. But the master copies ranges to their holders under the
//! next ring *before* it publishes that ring: a range this worker gave
//! away under ring N can be copied back to it for ring N+1 before it has
//! dropped its keys, or before it has even heard of N (a member that was
//! down comes back, a chain closes over it and opens again). Going by N
//! alone, the drop would then delete that copy, and a key would read as
//! "not found" on a member of its chain.
//!
//! So every range copied in is noted with how many rings had been
//! confirmed when it came, and a drop spares the keys of every range
//! copied in since the ring it started from was confirmed. Sparing too
//! much only leaves keys behind (they take space; the ring routes them
//! elsewhere, and the next drop tries them again); dropping too much loses
//! them.

use std::sync::{Arc, Mutex, MutexGuard};

use wimpy_schema::{KeyHashRange, RangeSet, Ring, WorkerId, key_hash};
use wimpy_store::{Record, Store};

/// Keys deleted per store call, the notes held meanwhile: a range being
/// copied in waits for at most this many deletions.
const DROP_CHUNK: usize = 512;

/// Ranges copied in, and the drops that must spare them.
#[derive(Debug, Default)]
pub(crate) struct CopiedIn {
    inner: Mutex<Notes>,
}

#[derive(Debug, Default)]
struct Notes {
    /// Rings confirmed so far.
    confirmations: u64,
    /// Ranges copied in, each with `confirmations` when it came; kept while
    /// a drop that started at or before that count may still run.
    ranges: Vec<(u64, KeyHashRange)>,
    /// The confirmation each running drop spares from.
    running: Vec<u64>,
}

impl Notes {
    /// Forgets notes no drop, running or to come, needs.
    fn trim(&mut self) {
        let oldest = self.running.iter().copied().min().unwrap_or(self.confirmations);
        self.ranges.retain(|&(at, _)| at >= oldest);
    }
}

/// A drop of keys, from the ring confirmed before the one that gave them
/// away: what it spares.
#[derive(Debug)]
pub(crate) struct Dropping {
    since: u64,
}

impl CopiedIn {
    fn lock(&self) -> MutexGuard<'_, Notes> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes `ranges` as being copied in: called before any of their
    /// records is written.
    pub(crate) fn copying(&self, ranges: &[KeyHashRange]) {
        let mut notes = self.lock();
        let at = notes.confirmations;
        notes.ranges.extend(ranges.iter().map(|&r| (at, r)));
    }

    /// A newer ring is confirmed; with `drops`, the keys of ranges it gives
    /// away are about to be dropped ([`drop_keys`]).
    pub(crate) fn confirmed(&self, drops: bool) -> Option<Dropping> {
        let mut notes = self.lock();
        let since = notes.confirmations;
        notes.confirmations += 1;
        let drop = drops.then(|| {
            notes.running.push(since);
            Dropping { since }
        });
        notes.trim();
        drop
    }

    /// `drop` is over, done or not.
    pub(crate) fn finished(&self, drop: Dropping) {
        let mut notes = self.lock();
        if let Some(i) = notes.running.iter().position(|&s| s == drop.since) {
            notes.running.swap_remove(i);
        }
        notes.trim();
    }
}

/// Deletes the keys of `ranges` from `store` (one pass over the log for
/// all of them), except those a ring held now (`ring`) puts in a chain of
/// worker `me`, and those of ranges copied in since `drop` began. Returns
/// how many it deleted.
pub(crate) fn drop_keys(
    copied_in: &CopiedIn,
    drop: &Dropping,
    store: &Store,
    ranges: &[KeyHashRange],
    me: WorkerId,
    ring: impl Fn() -> Arc<Ring>,
) -> wimpy_store::Result<u64> {
    // A scan reads the whole log whatever the range: one for all of them.
    let keys: Vec<Vec<u8>> = store.scan_ranges(ranges.to_vec()).filter_map(|r| r.ok().map(|r| r.key)).collect();
    let mut dropped = 0;
    for chunk in keys.chunks(DROP_CHUNK) {
        // Held while the chunk is checked and deleted: a range noted after
        // the check has its records written after the deletions.
        let notes = copied_in.lock();
        let spared: Vec<KeyHashRange> =
            notes.ranges.iter().filter(|&&(at, _)| at >= drop.since).map(|&(_, r)| r).collect();
        let spared = RangeSet::new(&spared);
        // A newer ring may have given some back, too.
        let ring = ring();
        let gone: Vec<&Vec<u8>> =
            chunk.iter().filter(|k| !spared.contains(key_hash(k)) && !ring.chain_of(k).contains(me)).collect();
        dropped += gone.len() as u64;
        store.merge(gone.into_iter().map(|key| Ok(Record { key: key.clone(), value: None, version: 0 })))?;
        std::mem::drop(notes);
    }
    Ok(dropped)
}
