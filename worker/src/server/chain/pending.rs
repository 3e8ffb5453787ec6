//! Writes on their way down a chain, by key: what makes a key *dirty* on a
//! member that is not its chain's tail.
//!
//! A member marks a write before storing it and clears it when the rest of
//! the chain has answered. A key with no write marked is *clean*: every
//! write of it this member holds is held by the tail too, so its value here
//! is committed and may be read here (CRAQ's clean read). A dirty key is
//! read once it is clean again.
//!
//! A write the rest of the chain did not take (the next member refused it
//! or could not be reached) leaves its key *doubtful*: this member may hold
//! a value the tail never will. The key is dirty until a later write of it
//! reaches the tail, which every member then holds in its place.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use wimpy_schema::{Failure, KeyHashRange};

const SHARDS: usize = 64;

/// One key's writes not yet answered by the tail.
#[derive(Debug, Default)]
struct Entry {
    key: Vec<u8>,
    unanswered: u32,
    /// The newest version the chain did not take (0: none).
    doubtful: u64,
}

/// A key whose newest write the chain did not take, to send down it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doubtful {
    pub(crate) hash: u64,
    pub(crate) key: Vec<u8>,
    pub(crate) version: u64,
}

#[derive(Debug, Default)]
struct Shard {
    keys: Mutex<HashMap<u64, Entry>>,
    /// Woken whenever a key of this shard may have become clean.
    cleaned: Notify,
}

/// The dirty keys of one worker, by key hash. Two keys of one hash share
/// an entry: the other is read a little later than it could be, never
/// sooner.
#[derive(Debug)]
pub(crate) struct Pending {
    shards: Vec<Shard>,
    /// Entries in all shards: with none, every key is clean without a
    /// lock (a read-only load takes none).
    entries: AtomicUsize,
}

impl Default for Pending {
    fn default() -> Self {
        Pending { shards: (0..SHARDS).map(|_| Shard::default()).collect(), entries: AtomicUsize::new(0) }
    }
}

impl Pending {
    fn shard(&self, h: u64) -> &Shard {
        // The low bits pick a stripe of the key locks; the high ones here.
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    /// Marks a write of `key` (hashed `h`) as on its way.
    pub(crate) fn begin(&self, h: u64, key: &[u8]) {
        let mut keys = self.shard(h).keys.lock().unwrap_or_else(|p| p.into_inner());
        let entry = keys.entry(h).or_insert_with(|| {
            // Counted before the write is stored: a read that finds it
            // stored finds it counted.
            self.entries.fetch_add(1, Ordering::SeqCst);
            Entry { key: key.to_vec(), ..Entry::default() }
        });
        entry.unanswered += 1;
    }

    /// Clears a write marked by [`Pending::begin`]: the tail holds it
    /// (`taken`), or it is known to be nowhere but here (`taken` false,
    /// `version` its number; 0 for a write this member did not store).
    pub(crate) fn end(&self, h: u64, version: u64, taken: bool) {
        let shard = self.shard(h);
        let mut keys = shard.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = keys.get_mut(&h) else { return };
        entry.unanswered = entry.unanswered.saturating_sub(1);
        if taken {
            // That write, or a later one, holds the key everywhere.
            if version >= entry.doubtful {
                entry.doubtful = 0;
            }
        } else {
            entry.doubtful = entry.doubtful.max(version);
        }
        if entry.unanswered == 0 && entry.doubtful == 0 {
            keys.remove(&h);
            self.entries.fetch_sub(1, Ordering::SeqCst);
            drop(keys);
            shard.cleaned.notify_waiters();
        }
    }

    /// Whether the key hashed `h` is clean.
    pub(crate) fn is_clean(&self, h: u64) -> bool {
        self.entries.load(Ordering::SeqCst) == 0
            || !self.shard(h).keys.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&h)
    }

    /// Waits until the key hashed `h` is clean, for at most `limit`.
    pub(crate) async fn clean(&self, h: u64, limit: Duration) -> Result<(), Failure> {
        if self.is_clean(h) {
            return Ok(());
        }
        let shard = self.shard(h);
        let waited = tokio::time::timeout(limit, async {
            loop {
                let cleaned = shard.cleaned.notified();
                if self.is_clean(h) {
                    return;
                }
                cleaned.await;
            }
        })
        .await;
        waited.map_err(|_| {
            Failure::Unavailable(format!(
                "a write of this key has not reached every copy in {} ms; it is read again once one does",
                limit.as_millis()
            ))
        })
    }

    /// The doubtful keys with no write on its way: what to send down their
    /// chains again.
    pub(crate) fn doubtful(&self) -> Vec<Doubtful> {
        let mut found = Vec::new();
        if self.entries.load(Ordering::SeqCst) == 0 {
            return found;
        }
        for shard in &self.shards {
            let keys = shard.keys.lock().unwrap_or_else(|p| p.into_inner());
            found.extend(keys.iter().filter(|(_, e)| e.doubtful != 0 && e.unanswered == 0).map(|(h, e)| Doubtful {
                hash: *h,
                key: e.key.clone(),
                version: e.doubtful,
            }));
        }
        found
    }

    /// Forgets the keys of `ranges` (given away: a later copy of them comes
    /// whole from their new holders).
    pub(crate) fn forget(&self, ranges: &[KeyHashRange]) {
        for shard in &self.shards {
            let mut keys = shard.keys.lock().unwrap_or_else(|p| p.into_inner());
            let before = keys.len();
            keys.retain(|h, _| !ranges.iter().any(|r| r.contains(*h)));
            self.entries.fetch_sub(before - keys.len(), Ordering::SeqCst);
            drop(keys);
            shard.cleaned.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_clean_once_every_write_of_it_is_answered() {
        let p = Pending::default();
        p.begin(7, b"k");
        p.begin(7, b"k");
        assert!(!p.is_clean(7));
        assert!(p.is_clean(8));
        p.end(7, 1, true);
        assert!(!p.is_clean(7), "one write still on its way");
        p.end(7, 2, true);
        assert!(p.is_clean(7));
    }

    #[test]
    fn a_write_the_chain_did_not_take_keeps_its_key_dirty_until_it_or_a_later_one_is_taken() {
        let p = Pending::default();
        p.begin(7, b"k");
        p.end(7, 5, false);
        assert!(!p.is_clean(7));
        p.begin(7, b"k");
        p.end(7, 4, true);
        assert!(!p.is_clean(7), "an older write does not replace the doubtful one");
        assert_eq!(p.doubtful(), vec![Doubtful { hash: 7, key: b"k".to_vec(), version: 5 }]);
        p.begin(7, b"k");
        assert_eq!(p.doubtful(), vec![], "one is on its way again");
        p.end(7, 5, true);
        assert!(p.is_clean(7), "the doubtful write itself, taken now");
    }

    #[tokio::test]
    async fn a_reader_waits_for_the_key_and_gives_up_typed() {
        let p = std::sync::Arc::new(Pending::default());
        p.begin(9, b"k");
        let waiting = {
            let p = p.clone();
            tokio::spawn(async move { p.clean(9, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.end(9, 1, true);
        assert!(waiting.await.unwrap().is_ok());

        p.begin(9, b"k");
        let gave_up = p.clean(9, Duration::from_millis(20)).await;
        assert!(matches!(gave_up, Err(Failure::Unavailable(_))), "{gave_up:?}");
    }

    #[test]
    fn forgetting_a_range_cleans_its_keys() {
        let p = Pending::default();
        p.begin(10, b"a");
        p.begin(u64::MAX - 1, b"b");
        p.forget(&[KeyHashRange { start: 0, end: 100 }]);
        assert!(p.is_clean(10));
        assert!(!p.is_clean(u64::MAX - 1));
    }
}
