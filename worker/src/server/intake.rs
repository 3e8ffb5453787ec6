//! Bounded intake: how much a worker takes in at once. Calls in flight are
//! counted per worker and per connection, and bytes of values being
//! uploaded (`putStream`) per worker, reserved as they arrive. Past a cap a
//! request answers `overloaded` at once: the caller backs off and retries,
//! and the worker keeps serving what it has instead of running out of
//! memory.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wimpy_schema::Failure;

/// The caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntakeLimits {
    /// Data-plane calls in flight in the whole worker (a batch counts once).
    pub calls: usize,
    /// Data-plane calls in flight on one connection, so one client cannot
    /// take the whole worker's share.
    pub calls_per_connection: usize,
    /// Bytes of uploads held in memory, waiting for their commit.
    pub upload_bytes: usize,
}

impl Default for IntakeLimits {
    /// Sized for a Pi with 1 GiB or more: a quarter of that at most in
    /// uploads, and more calls in flight than the cores and one fsync can
    /// serve between them.
    fn default() -> IntakeLimits {
        IntakeLimits { calls: 4096, calls_per_connection: 1024, upload_bytes: 256 << 20 }
    }
}

/// What a worker holds now, against its [`IntakeLimits`]. Shared by every
/// core's service.
#[derive(Debug)]
pub struct Intake {
    limits: IntakeLimits,
    calls: AtomicUsize,
    upload_bytes: AtomicUsize,
}

/// Calls in flight on one connection.
pub(crate) type ConnectionCalls = Rc<Cell<usize>>;

impl Intake {
    pub fn new(limits: IntakeLimits) -> Intake {
        Intake { limits, calls: AtomicUsize::new(0), upload_bytes: AtomicUsize::new(0) }
    }

    /// Admits one call on `connection`, or answers why not. The call holds
    /// its place until the returned guard drops.
    pub(crate) fn admit<'a>(&'a self, connection: &ConnectionCalls) -> Result<Admitted<'a>, Failure> {
        if connection.get() >= self.limits.calls_per_connection {
            return Err(Failure::Overloaded);
        }
        if self.calls.fetch_add(1, Ordering::AcqRel) >= self.limits.calls {
            self.calls.fetch_sub(1, Ordering::AcqRel);
            return Err(Failure::Overloaded);
        }
        connection.set(connection.get() + 1);
        Ok(Admitted { intake: self, connection: connection.clone() })
    }

    /// Reserves `bytes` of upload memory, or refuses.
    pub(crate) fn reserve(&self, bytes: usize) -> Result<(), Failure> {
        let before = self.upload_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.limits.upload_bytes {
            self.upload_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Failure::Overloaded);
        }
        Ok(())
    }

    /// Gives back upload memory reserved earlier.
    pub(crate) fn release(&self, bytes: usize) {
        self.upload_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One admitted call; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    intake: &'a Intake,
    connection: ConnectionCalls,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.intake.calls.fetch_sub(1, Ordering::AcqRel);
        self.connection.set(self.connection.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_past_either_cap_are_refused_and_places_come_back() {
        let intake = Intake::new(IntakeLimits { calls: 3, calls_per_connection: 2, upload_bytes: 10 });
        let (a, b) = (ConnectionCalls::default(), ConnectionCalls::default());
        let a1 = intake.admit(&a).unwrap();
        let _a2 = intake.admit(&a).unwrap();
        assert_eq!(intake.admit(&a).unwrap_err(), Failure::Overloaded, "the connection's cap");
        let _b1 = intake.admit(&b).unwrap();
        assert_eq!(intake.admit(&b).unwrap_err(), Failure::Overloaded, "the worker's cap");
        drop(a1);
        assert!(intake.admit(&b).is_ok());
        assert!(intake.reserve(6).is_ok());
        assert_eq!(intake.reserve(5).unwrap_err(), Failure::Overloaded);
        intake.release(6);
        assert!(intake.reserve(10).is_ok());
    }
}
