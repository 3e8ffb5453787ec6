//! When each client sends: as soon as its last answer arrives (closed loop),
//! or on a fixed schedule (fixed rate). At a fixed rate every operation has
//! an intended send time and its latency counts from then, so a stall that
//! delays the operations queued behind it shows in their latencies instead
//! of quietly lowering the request rate (coordinated omission).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::record::{Outcome, Recorder};
use super::workload::OpKind;

/// The highest and lowest rates a run may ask for, in operations per second.
pub const RATE_RANGE: std::ops::RangeInclusive<f64> = 0.01..=10_000_000.0;

/// How clients pace their requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Each client sends its next request when the last one is answered.
    ClosedLoop,
    /// All clients together send this many requests per second, evenly
    /// spaced and interleaved.
    FixedRate(f64),
}

/// One client's schedule over one run.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    stop: Instant,
    /// Between two sends of this client (fixed rate only).
    interval: Option<Duration>,
    /// Where this client's sends sit between those of the others.
    offset: Duration,
    sent: u64,
}

impl Pacer {
    /// The schedule of client `client` of `clients` over `start..stop`.
    pub fn new(pace: Pace, start: Instant, stop: Instant, client: usize, clients: usize) -> Pacer {
        let (interval, offset) = match pace {
            Pace::ClosedLoop => (None, Duration::ZERO),
            Pace::FixedRate(rate) => {
                // Client c sends the global operations c, c + clients, ...
                // and global operation k is due at start + k / rate. Rates
                // are checked (MAX_RATE) so a slot is never zero-long.
                let every = Duration::from_secs_f64(clients as f64 / rate).max(Duration::from_nanos(1));
                (Some(every), Duration::from_secs_f64(client as f64 / rate))
            }
        };
        Pacer { start, stop, interval, offset, sent: 0 }
    }

    /// When the next operation is meant to go out, or `None` once the run is
    /// over. Closed loop: now. Fixed rate: its slot, which lies in the past
    /// when the client has fallen behind.
    pub fn next(&mut self, now: Instant) -> Option<Instant> {
        if now >= self.stop {
            return None;
        }
        let due = match self.interval {
            // Not before the common start, which the clock counts from.
            None => now.max(self.start),
            Some(every) => self.due(self.sent, every),
        };
        if due >= self.stop {
            return None;
        }
        self.sent += 1;
        Some(due)
    }

    fn due(&self, n: u64, every: Duration) -> Instant {
        self.start + self.offset + every.mul_f64(n as f64)
    }

    /// Operations due before the end of the run that were never sent
    /// because the client was still waiting on earlier ones.
    pub fn unsent(&self) -> u64 {
        let Some(every) = self.interval else { return 0 };
        let window = self.stop.saturating_duration_since(self.start + self.offset);
        let due = (window.as_secs_f64() / every.as_secs_f64()).ceil() as u64;
        due.saturating_sub(self.sent)
    }
}

/// Sends one operation and says what it was and how it went.
pub trait Operator {
    fn call(&mut self) -> impl Future<Output = (OpKind, Outcome)>;
}

/// How late a timer may fire without the delay counting as latency: tokio's
/// timers tick in milliseconds, so a sleep until a slot ends up to a
/// millisecond after it. Lateness beyond this (a client thread too busy to
/// send on time) still counts.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Runs one client: sends operations on its schedule until the run ends,
/// recording each one's latency from its intended send time, and whether
/// it was answered within the run.
pub async fn drive(pacer: &mut Pacer, operator: &mut impl Operator, recorder: &mut Recorder) {
    while let Some(due) = pacer.next(Instant::now()) {
        let behind = due <= Instant::now();
        // Only sleep for a time still ahead: tokio rounds a deadline up to
        // its next 1 ms tick, so sleeping until "now" would hold every
        // closed-loop operation back by up to a millisecond.
        if !behind {
            tokio::time::sleep_until(due).await;
        }
        let sent = if behind { due } else { Instant::now().min(due + TIMER_SLACK) };
        let (kind, outcome) = operator.call().await;
        let done = Instant::now();
        recorder.record(kind, done.saturating_duration_since(sent), done <= pacer.stop, outcome);
    }
    recorder.add_unsent(pacer.unsent());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every request at once, except the first, which takes a
    /// second (a stall: a compaction, a GC pause, a lost packet).
    struct StallsOnce {
        calls: u32,
    }

    impl Operator for StallsOnce {
        async fn call(&mut self) -> (OpKind, Outcome) {
            self.calls += 1;
            if self.calls == 1 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (OpKind::Get, Ok(()))
        }
    }

    fn ms(r: &Recorder, q: f64) -> u64 {
        r.ops()[&OpKind::Get].latency.value_at_quantile(q) / 1000
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_rate_counts_latency_from_the_intended_send_time() {
        // 100 requests per second for 3 seconds; the first one stalls 1 s.
        let start = Instant::now();
        let mut pacer = Pacer::new(Pace::FixedRate(100.0), start, start + Duration::from_secs(3), 0, 1);
        let mut rec = Recorder::default();
        drive(&mut pacer, &mut StallsOnce { calls: 0 }, &mut rec).await;
        let get = &rec.ops()[&OpKind::Get];
        assert_eq!(get.latency.len(), 300, "every slot sent: the client caught up");
        assert_eq!(rec.unsent(), 0);
        // The 100 requests due during the stall waited for it: requests due
        // at 0, 10, 20 ... 990 ms all went out at 1 s, so their latencies run
        // from 1000 ms down to 10 ms; the 200 after were answered at once.
        assert!(get.latency.max() / 1000 >= 999, "max {}", get.latency.max());
        assert_eq!(get.latency.count_between(9_000, 1_001_000), 100);
        assert!(ms(&rec, 0.5) <= 1, "p50 {}", ms(&rec, 0.5));
        // 300 requests: the 75th percentile is the 25th of the delayed ones.
        let p75 = ms(&rec, 0.75);
        assert!((240..=260).contains(&p75), "p75 {p75} ms: the queue behind the stall shows");
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_hides_the_stall_from_the_queued_requests() {
        // The same service measured closed-loop: only the stalled request is
        // slow; the requests it delayed were never sent, so never counted.
        let start = Instant::now();
        let stop = start + Duration::from_secs(3);
        let mut pacer = Pacer::new(Pace::ClosedLoop, start, stop, 0, 1);
        let mut rec = Recorder::default();
        let mut op = StallsOnce { calls: 0 };
        // An instant service would loop forever in paused time: give the
        // operator a 10 ms service time after the stall.
        struct Paced<'a>(&'a mut StallsOnce);
        impl Operator for Paced<'_> {
            async fn call(&mut self) -> (OpKind, Outcome) {
                let r = self.0.call().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                r
            }
        }
        drive(&mut pacer, &mut Paced(&mut op), &mut rec).await;
        let get = &rec.ops()[&OpKind::Get];
        assert_eq!(get.latency.len(), 1 + 199, "one stall, then one request per 10 ms");
        assert_eq!(get.latency.count_between(11_000, 2_000_000), 1);
        assert_eq!(ms(&rec, 0.99), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_cannot_keep_up_reports_what_it_never_sent() {
        struct Slow;
        impl Operator for Slow {
            async fn call(&mut self) -> (OpKind, Outcome) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (OpKind::Put, Ok(()))
            }
        }
        // Asked for 50/s from one client that manages 10/s, for 2 s.
        let start = Instant::now();
        let mut pacer = Pacer::new(Pace::FixedRate(50.0), start, start + Duration::from_secs(2), 0, 1);
        let mut rec = Recorder::default();
        drive(&mut pacer, &mut Slow, &mut rec).await;
        let sent = rec.ops()[&OpKind::Put].latency.len();
        assert_eq!(sent, 20);
        assert_eq!(rec.unsent(), 100 - 20);
        // The last request sent was due at 19 * 20 ms = 380 ms and answered
        // at 2 s: the backlog is in the latency.
        assert!(rec.ops()[&OpKind::Put].latency.max() / 1000 >= 1600);
    }

    #[test]
    fn clients_interleave_their_slots() {
        let start = Instant::now();
        let stop = start + Duration::from_secs(1);
        let mut slots: Vec<Duration> = (0..4)
            .flat_map(|c| {
                let mut p = Pacer::new(Pace::FixedRate(40.0), start, stop, c, 4);
                std::iter::from_fn(move || p.next(start)).map(move |t| t - start)
            })
            .collect();
        slots.sort();
        assert_eq!(slots.len(), 40);
        for (k, t) in slots.iter().enumerate() {
            let want = Duration::from_millis(25 * k as u64);
            assert!(t.abs_diff(want) < Duration::from_micros(10), "slot {k} at {t:?}");
        }
    }
}
