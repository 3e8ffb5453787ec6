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
    /// Latencies of the operations that failed (a timeout shows here).
    pub failed_latency: Histogram<u64>,
    /// Successes answered before the run's end (the throughput counts
    /// these; those answered while the run drained count for latency only).
    pub in_window: u64,
    pub errors: BTreeMap<String, u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds")
}

impl Default for OpStats {
    fn default() -> OpStats {
        OpStats { latency: histogram(), failed_latency: histogram(), in_window: 0, errors: BTreeMap::new() }
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

    /// Records one operation; `in_window` says it was answered before the
    /// run's end.
    pub fn record(&mut self, kind: OpKind, latency: Duration, in_window: bool, outcome: Outcome) {
        let stats = self.ops.entry(kind).or_default();
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
        match outcome {
            Ok(()) => {
                stats.latency.saturating_record(micros);
                stats.in_window += u64::from(in_window);
            }
            Err(kind) => {
                stats.failed_latency.saturating_record(micros);
                *stats.errors.entry(kind).or_default() += 1;
            }
        }
        if let Some(live) = &self.live {
            live.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn add_unsent(&mut self, n: u64) {
        self.unsent = self.unsent.saturating_add(n);
    }

    /// Adds another client's figures to these.
    pub fn merge(&mut self, other: Recorder) {
        for (kind, s) in other.ops {
            let mine = self.ops.entry(kind).or_default();
            mine.latency.add(&s.latency).expect("histograms with the same bounds");
            mine.failed_latency.add(&s.failed_latency).expect("histograms with the same bounds");
            mine.in_window += s.in_window;
            for (e, n) in s.errors {
                *mine.errors.entry(e).or_default() += n;
            }
        }
        self.unsent = self.unsent.saturating_add(other.unsent);
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

    /// Operations that succeeded before the run's end.
    pub fn succeeded_in_window(&self) -> u64 {
        self.ops.values().map(|s| s.in_window).sum()
    }

    pub fn failed(&self) -> u64 {
        self.ops.values().map(OpStats::error_count).sum()
    }

    /// All operation types' latencies together.
    pub fn overall(&self) -> Histogram<u64> {
        let mut all = histogram();
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
        a.record(OpKind::Get, Duration::from_micros(100), true, Ok(()));
        a.record(OpKind::Get, Duration::ZERO, true, Err("not_found".into()));
        let mut b = Recorder::default();
        b.record(OpKind::Get, Duration::from_millis(5), true, Ok(()));
        b.record(OpKind::Put, Duration::from_secs(7200), false, Ok(()));
        b.record(OpKind::Get, Duration::from_secs(10), true, Err("timeout".into()));
        b.add_unsent(3);
        a.merge(b);
        let get = &a.ops()[&OpKind::Get];
        assert_eq!((get.latency.len(), get.errors["not_found"], get.errors["timeout"]), (2, 1, 1));
        assert_eq!(get.failed_latency.max() / 1_000_000, 10, "a timeout keeps its latency");
        assert_eq!(get.latency.max() / 100, 50, "5 ms within 3 digits");
        assert_eq!(a.ops()[&OpKind::Put].latency.max() / 1_000_000, 3600, "clamped at an hour");
        assert_eq!((a.succeeded(), a.succeeded_in_window(), a.failed(), a.unsent()), (3, 2, 2, 3));
        assert_eq!(a.overall().len(), 3);
    }

    #[test]
    fn the_live_counter_counts_every_operation() {
        let live = Arc::new(AtomicU64::new(0));
        let mut r = Recorder::counting_into(live.clone());
        r.record(OpKind::Hash, Duration::from_micros(3), true, Ok(()));
        r.record(OpKind::Hash, Duration::from_micros(3), true, Err("timeout".into()));
        assert_eq!(live.load(Ordering::Relaxed), 2);
    }
}
