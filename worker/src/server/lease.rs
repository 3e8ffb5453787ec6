//! The lease under which a worker acts in its chains.
//!
//! With more than one copy of each key, the master hands a member's chain
//! roles on to others when it stops hearing from it. A member cut off from
//! the master, but not from clients, would go on answering reads from its
//! copy while the chain it was taken out of takes new writes: stale
//! answers. So a member serves reads, and writes as a head, only under a
//! lease: each heartbeat the master answers with the epoch of the ring the
//! member holds renews it for the length the master named at registration,
//! counted from when the heartbeat was *sent* (the master counts its
//! silence from when one *arrived*, later). The master marks a member down
//! only after a longer silence than the lease, so a member stops before
//! its roles are handed on. With one copy nobody takes a key over while its
//! worker is down, and there is no lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wimpy_schema::{Failure, WorkerId};

/// A worker's lease on its chain roles.
#[derive(Debug)]
pub(crate) struct Lease {
    /// What `until` counts from.
    base: Instant,
    /// How long an answered heartbeat lets the worker act, in nanoseconds;
    /// 0: the master grants no lease (one of an earlier version), and the
    /// worker acts without.
    length: AtomicU64,
    /// Until when it holds, in nanoseconds after `base` (0: never held).
    until: AtomicU64,
}

impl Default for Lease {
    fn default() -> Self {
        // Before any heartbeat this process can have sent.
        let now = Instant::now();
        let base = now.checked_sub(Duration::from_secs(24 * 3600)).unwrap_or(now);
        Lease { base, length: AtomicU64::new(0), until: AtomicU64::new(0) }
    }
}

impl Lease {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos().min(u128::from(u64::MAX)) as u64
    }

    /// The length the master grants (`None`: no lease).
    pub(crate) fn set_length(&self, length: Option<Duration>) {
        let nanos = length.map_or(0, |l| l.as_nanos().clamp(1, u128::from(u64::MAX)) as u64);
        self.length.store(nanos, Ordering::Release);
    }

    /// The master answered a heartbeat sent at `sent` with the epoch of
    /// the ring held.
    pub(crate) fn renew(&self, sent: Instant) {
        let until = self.nanos(sent).saturating_add(self.length.load(Ordering::Acquire));
        self.until.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether worker `me` may act in its chains now; if not, why.
    pub(crate) fn check(&self, me: WorkerId) -> Result<(), Failure> {
        let length = self.length.load(Ordering::Acquire);
        if length == 0 {
            return Ok(());
        }
        let (now, until) = (self.nanos(Instant::now()), self.until.load(Ordering::Acquire));
        if now < until {
            return Ok(());
        }
        let why = if until == 0 {
            "has not yet had a heartbeat answered by the master".to_string()
        } else {
            let since = Duration::from_nanos(now - until + length);
            format!("has not had a heartbeat answered by the master with its ring's epoch for {since:.1?}")
        };
        Err(Failure::Unavailable(format!(
            "worker {me} {why}: its lease on its chains ran out, and the master may have handed them on"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_length_there_is_nothing_to_hold() {
        assert!(Lease::default().check(1).is_ok());
    }

    #[test]
    fn a_lease_holds_from_the_heartbeat_sent_for_its_length() {
        let lease = Lease::default();
        lease.set_length(Some(Duration::from_millis(200)));
        let never = lease.check(7).unwrap_err();
        assert!(matches!(&never, Failure::Unavailable(m) if m.contains("not yet")), "{never:?}");
        lease.renew(Instant::now());
        assert!(lease.check(7).is_ok());
        // An answer to an older heartbeat does not shorten it.
        lease.renew(Instant::now() - Duration::from_secs(1));
        assert!(lease.check(7).is_ok());
        // One sent longer ago than the length grants nothing now.
        let lease = Lease::default();
        lease.set_length(Some(Duration::from_millis(200)));
        lease.renew(Instant::now() - Duration::from_millis(300));
        let expired = lease.check(7).unwrap_err();
        assert!(matches!(&expired, Failure::Unavailable(m) if m.contains("worker 7") && m.contains("lease")));
    }
}
