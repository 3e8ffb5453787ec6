//! The versions a head numbers its writes with, and which of them are not
//! in its log yet: what lets a copy of a range be brought up to date by
//! the writes numbered since it began, rather than taken again whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::EPOCH_SHIFT;

#[derive(Debug, Default)]
struct Counts {
    /// The last version numbered.
    last: u64,
    /// The first version of each run numbered and not yet stored (or
    /// failed), with how many runs start there.
    unstored: BTreeMap<u64, usize>,
}

/// A head's version counter.
#[derive(Debug, Default)]
pub(crate) struct Numbering(Arc<Mutex<Counts>>);

/// A run of versions numbered and not yet stored; dropping it says the
/// store is done with them (stored or refused).
#[derive(Debug)]
#[must_use = "the versions count as unstored until this drops"]
pub(crate) struct Unstored {
    counts: Arc<Mutex<Counts>>,
    first: u64,
}

impl Numbering {
    /// `n` (at least one) versions for writes numbered in `epoch`, in
    /// order: above every version numbered here or stored (`stored_max`),
    /// and above every version of an earlier epoch. The first is returned
    /// with the guard that holds them unstored. `stored_max` is read under
    /// the counter's lock, as [`Numbering::stored_up_to`] reads it.
    pub(crate) fn next(&self, epoch: u64, stored_max: impl FnOnce() -> u64, n: u64) -> (u64, Unstored) {
        debug_assert!(n > 0);
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let floor = (epoch.min((1 << (64 - EPOCH_SHIFT)) - 1) << EPOCH_SHIFT).max(stored_max());
        let first = c.last.max(floor) + 1;
        c.last = first + n - 1;
        *c.unstored.entry(first).or_default() += 1;
        (first, Unstored { counts: self.0.clone(), first })
    }

    /// A version up to which every write numbered here is in the store
    /// (whose highest version is `stored_max`), and above which every write
    /// numbered from now on is: where a copy of the ranges this worker
    /// heads, begun now, is cut.
    pub(crate) fn stored_up_to(&self, stored_max: impl FnOnce() -> u64) -> u64 {
        let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match c.unstored.keys().next() {
            Some(first) => first - 1,
            // Under the lock: a write numbered after this is numbered
            // above what the store held here.
            None => c.last.max(stored_max()),
        }
    }
}

impl Drop for Unstored {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.unstored.get_mut(&self.first) {
            *n -= 1;
            if *n == 0 {
                c.unstored.remove(&self.first);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rise_over_epochs_and_stored_ones() {
        let n = Numbering::default();
        let (a, _a) = n.next(1, || 0, 3);
        assert_eq!(a, (1 << EPOCH_SHIFT) + 1);
        let (b, _b) = n.next(1, || 0, 1);
        assert_eq!(b, a + 3, "a run of three takes three versions");
        let (c, _c) = n.next(1, || b + 100, 1);
        assert_eq!(c, b + 101, "above what the store holds");
        let (d, _d) = n.next(2, || 0, 1);
        assert_eq!(d, (2 << EPOCH_SHIFT) + 1, "above every version of an earlier epoch");
    }

    #[test]
    fn the_cut_stays_below_the_first_write_not_yet_stored() {
        let n = Numbering::default();
        assert_eq!(n.stored_up_to(|| 0), 0);
        let (a, stored_a) = n.next(1, || 0, 1);
        let (b, stored_b) = n.next(1, || 0, 2);
        let (c, stored_c) = n.next(1, || 0, 1);
        assert_eq!(n.stored_up_to(|| 0), a - 1, "nothing stored yet");
        drop(stored_b);
        drop(stored_c);
        assert_eq!(n.stored_up_to(|| 0), a - 1, "the oldest is still on its way to the store");
        drop(stored_a);
        assert_eq!(n.stored_up_to(|| 0), c, "all stored");
        assert!(b > a && c > b + 1);
        let (d, _d) = n.next(1, || 0, 1);
        assert!(d > c, "a later write is above the cut");
        assert_eq!(n.stored_up_to(|| 0), c, "and holds it below itself until stored");
        drop(_d);
        assert_eq!(n.stored_up_to(|| d + 7), d + 7, "with nothing on its way, all the store holds");
    }
}
