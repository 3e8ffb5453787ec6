//! The worker's hold on its store, and healing a store that failed.
//!
//! A failed write or fsync (a full disk, a dying SD card) poisons the store:
//! what is on flash may no longer match what was acknowledged, so it refuses
//! every call. The worker then reports itself `failed` with the reason, and
//! [`StoreSlot::heal`] takes the store out of service, closes it once the
//! calls still using it are done, and opens its directory again, recovering
//! from the log as after a crash. The directory must first take
//! [`REOPEN_HEADROOM`] bytes and an fsync, and the reopened store a
//! checkpoint, before it serves: a disk that is still full (or still fails)
//! stays failed rather than flapping, and one that gets space back serves
//! again without a restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use wimpy_store::io::Dir;
use wimpy_store::{Options, RecoveryReport, Store, StoreError};

/// Bytes the store's directory must take (written and fsynced, then
/// removed) before a failed store is reopened: room for a full write-back
/// of the log's tail and an inline value, so a disk with a few pages freed
/// by the reopen itself does not fail again at the next write.
pub const REOPEN_HEADROOM: usize = 4 << 20;
/// The file that proves the room; removed again at once.
const PROBE_FILE: &str = "reopen.probe";

/// The store a worker serves from, swapped for a fresh one when it fails.
#[derive(Debug)]
pub struct StoreSlot {
    /// The store serving now; `None` while a failed one is reopened.
    current: ArcSwapOption<Store>,
    /// Its directory, opened (and locked) once for the worker's lifetime:
    /// nothing else can take it between a close and the reopen.
    dir: Arc<dyn Dir>,
    options: Options,
    /// Why the store does not serve, while it is out of service.
    failure: Mutex<Option<OutOfService>>,
}

/// Why a store is out of service.
#[derive(Clone, Debug)]
struct OutOfService {
    /// What poisoned it.
    cause: String,
    /// What went wrong at the last attempt to reopen it, if one failed.
    reopening: Option<String>,
}

impl std::fmt::Display for OutOfService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cause)?;
        match &self.reopening {
            Some(why) => write!(f, "; reopening it failed: {why}"),
            None => Ok(()),
        }
    }
}

impl StoreSlot {
    /// A slot serving `store`.
    pub fn new(store: Store) -> StoreSlot {
        StoreSlot {
            dir: store.dir(),
            options: store.options().clone(),
            current: ArcSwapOption::from_pointee(store),
            failure: Mutex::new(None),
        }
    }

    /// The store to serve a call from; while there is none, the refusal a
    /// poisoned store gives, saying why.
    pub fn get(&self) -> Result<Arc<Store>, StoreError> {
        self.current.load_full().ok_or_else(|| StoreError::Poisoned {
            cause: self.failure().unwrap_or_else(|| "the store is being reopened".into()),
        })
    }

    /// The options the store runs with (the same across reopens).
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Why the store does not serve now, if it does not: what poisoned it,
    /// and what went wrong reopening it if that failed too.
    pub fn failure(&self) -> Option<String> {
        match self.current.load_full() {
            Some(store) => store.poisoned(),
            None => Some(self.lock_failure().as_ref().map_or("the store is being reopened".into(), |f| f.to_string())),
        }
    }

    /// If the store is poisoned (or an earlier attempt left none), takes it
    /// out of service and opens its directory again. Blocks: it waits for
    /// the calls still using the failed store and replays the log.
    ///
    /// Answers `Ok(None)` when the store was serving, `Ok(Some(report))`
    /// when it was reopened and serves again, and `Err(why)` when it is
    /// still out of service (the caller tries again later).
    pub fn heal(&self) -> Result<Option<RecoveryReport>, String> {
        if let Some(store) = self.current.load_full() {
            let Some(cause) = store.poisoned() else {
                return Ok(None);
            };
            *self.lock_failure() = Some(OutOfService { cause, reopening: None });
            self.current.store(None);
            let store = Self::sole_owner(store);
            // A poisoned store cannot write its last checkpoint; the log is
            // what the reopen recovers from.
            if let Err(e) = store.close() {
                tracing::debug!(error = %e, "closing the failed store");
            }
        }
        let still_failed = |why: String| {
            let mut failure = self.lock_failure();
            let failure = failure.get_or_insert_with(|| OutOfService { cause: why.clone(), reopening: None });
            failure.reopening = Some(why);
            failure.to_string()
        };
        probe_room(&*self.dir)
            .map_err(|e| still_failed(format!("the disk cannot take {REOPEN_HEADROOM} bytes: {e}")))?;
        let store = Store::open_in(self.dir.clone(), self.options.clone()).map_err(|e| still_failed(e.to_string()))?;
        // Proof that the disk takes writes again, and a quick next open.
        if let Err(e) = store.checkpoint() {
            drop(store.close());
            return Err(still_failed(e.to_string()));
        }
        let report = store.recovery_report().clone();
        self.current.store(Some(Arc::new(store)));
        *self.lock_failure() = None;
        Ok(Some(report))
    }

    /// Closes the store for good, checking that its last flush and
    /// checkpoint succeeded. Call it once nothing else uses the store.
    pub fn close(&self) -> Result<(), String> {
        let Some(store) = self.current.swap(None) else {
            let why = self.lock_failure().as_ref().map(|f| f.to_string()).unwrap_or_default();
            return Err(format!("the store was out of service as the worker stopped: {why}"));
        };
        let store = Arc::into_inner(store).ok_or("the store is still in use as it closes")?;
        store.close().map_err(|e| format!("closing the store: {e}"))
    }

    /// Waits until `store` has no other users: calls that took it before it
    /// left service finish quickly (it refuses everything), and moves that
    /// scan it end within their deadlines.
    fn sole_owner(mut store: Arc<Store>) -> Store {
        let started = Instant::now();
        let mut warned = false;
        loop {
            match Arc::try_unwrap(store) {
                Ok(store) => return store,
                Err(shared) => store = shared,
            }
            if !warned && started.elapsed() > Duration::from_secs(10) {
                tracing::warn!("the failed store is still in use after 10 s; waiting to reopen it");
                warned = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn lock_failure(&self) -> std::sync::MutexGuard<'_, Option<OutOfService>> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes [`REOPEN_HEADROOM`] bytes to a file in `dir`, fsyncs and removes
/// it: the disk has room and takes writes.
fn probe_room(dir: &dyn Dir) -> std::io::Result<()> {
    if dir.list()?.iter().any(|n| n == PROBE_FILE) {
        dir.remove(PROBE_FILE)?;
    }
    let file = dir.create(PROBE_FILE)?;
    // Not zeros: a compressing file system would store those in no space.
    let chunk: Vec<u8> = (0..256u32 << 10).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let written = (0..REOPEN_HEADROOM / chunk.len())
        .try_for_each(|i| file.write_all_at(&chunk, (i * chunk.len()) as u64))
        .and_then(|()| file.sync_data());
    drop(file);
    let removed = dir.remove(PROBE_FILE);
    written.and(removed)
}
