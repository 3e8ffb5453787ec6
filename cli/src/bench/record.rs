//! What a run measured: per operation type, an HDR histogram of latencies
//! (microseconds, 3 significant digits, up to an hour) and errors by kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::workload::OpKind;

/// How one operation went: done, or failed with an error kind
/// (`not_found`, `timeout`, `compute:backend_busy`, ...).
pub type Outcome = Result<(), String>;

/// Highest latency a histogram tracks: an hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// One operation type's figures.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Latencies of the operations that succeeded, in microseconds.
    pub latency: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> OpStats {
        OpStats {
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
        }
    }
}

impl OpStats {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Figures of one client, or (merged) of all clients.
#[derive(Debug, Default)]
pub struct Recorder {
    ops: BTreeMap<OpKind, OpStats>,
    unsent: u64,
    /// Operations finished so far, for the progress bar.
    live: Option<Arc<AtomicU64>>,
}

impl Recorder {
    /// A recorder that also counts finished operations into `live`.
    pub fn counting_into(live: Arc<AtomicU64>) -> Recorder {
        Recorder { live: Some(live), ..Recorder::default() }
    }

    pub fn record(&mut self, kind: OpKind, latency: Duration, outcome: Outcome) {
        let stats = self.ops.entry(kind).or_default();
        match outcome {
            Ok(()) => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
                stats.latency.saturating_record(micros);
            }
            Err(kind) => *stats.errors.entry(kind).or_default() += 1,
        }
        if let Some(live) = &self.live {
            live.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn add_unsent(&mut self, n: u64) {
        self.unsent += n;
    }

    /// Adds another client's figures to these.
    pub fn merge(&mut self, other: Recorder) {
        for (kind, s) in other.ops {
            let mine = self.ops.entry(kind).or_default();
            mine.latency.add(&s.latency).expect("histograms with the same bounds");
            for (e, n) in s.errors {
                *mine.errors.entry(e).or_default() += n;
            }
        }
        self.unsent += other.unsent;
    }

    pub fn ops(&self) -> &BTreeMap<OpKind, OpStats> {
        &self.ops
    }

    /// Operations that were due at a fixed rate but never sent: the clients
    /// could not keep up.
    pub fn unsent(&self) -> u64 {
        self.unsent
    }

    /// Operations that succeeded.
    pub fn succeeded(&self) -> u64 {
        self.ops.values().map(|s| s.latency.len()).sum()
    }

    pub fn failed(&self) -> u64 {
        self.ops.values().map(OpStats::error_count).sum()
    }

    /// All operation types' latencies together.
    pub fn overall(&self) -> Histogram<u64> {
        let mut all = OpStats::default().latency;
        for s in self.ops.values() {
            all.add(&s.latency).expect("histograms with the same bounds");
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_errors_and_latencies() {
        let mut a = Recorder::default();
        a.record(OpKind::Get, Duration::from_micros(100), Ok(()));
        a.record(OpKind::Get, Duration::ZERO, Err("not_found".into()));
        let mut b = Recorder::default();
        b.record(OpKind::Get, Duration::from_millis(5), Ok(()));
        b.record(OpKind::Put, Duration::from_secs(7200), Ok(()));
        b.record(OpKind::Get, Duration::ZERO, Err("not_found".into()));
        b.add_unsent(3);
        a.merge(b);
        let get = &a.ops()[&OpKind::Get];
        assert_eq!((get.latency.len(), get.errors["not_found"]), (2, 2));
        assert_eq!(get.latency.max() / 100, 50, "5 ms within 3 digits");
        assert_eq!(a.ops()[&OpKind::Put].latency.max() / 1_000_000, 3600, "clamped at an hour");
        assert_eq!((a.succeeded(), a.failed(), a.unsent()), (3, 2, 3));
        assert_eq!(a.overall().len(), 3);
    }

    #[test]
    fn the_live_counter_counts_every_operation() {
        let live = Arc::new(AtomicU64::new(0));
        let mut r = Recorder::counting_into(live.clone());
        r.record(OpKind::Hash, Duration::from_micros(3), Ok(()));
        r.record(OpKind::Hash, Duration::from_micros(3), Err("timeout".into()));
        assert_eq!(live.load(Ordering::Relaxed), 2);
    }
}
