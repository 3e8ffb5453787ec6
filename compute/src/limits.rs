use std::time::{Duration, Instant};

use super::ComputeError;

/// What a worker lets one job use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest image, in pixels, read from the header before decoding and
    /// checked again for every operation's output (and a resize's image
    /// between its passes).
    pub max_pixels: u64,
    /// Largest value a job may read, in bytes.
    pub max_value_bytes: u64,
    /// How long a job may run (a job may ask for less); checked between
    /// passes, and its caller stops waiting shortly after.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_pixels: 50_000_000, max_value_bytes: 256 << 20, deadline: Duration::from_secs(60) }
    }
}

impl Limits {
    /// Refuses a `width × height` image larger than the pixel limit.
    pub fn check_size(&self, width: u32, height: u32) -> Result<(), ComputeError> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(ComputeError::TooManyPixels { width, height, pixels, limit: self.max_pixels });
        }
        Ok(())
    }
}

/// When a job must be done by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    limit: Duration,
}

impl Deadline {
    /// A deadline `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline { start: Instant::now(), limit }
    }

    /// How long the job was given.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Errs once the deadline has passed. Backends call this between passes.
    pub fn check(&self) -> Result<(), ComputeError> {
        let elapsed = self.start.elapsed();
        if elapsed > self.limit {
            return Err(ComputeError::DeadlineExceeded {
                elapsed_ms: elapsed.as_millis() as u64,
                limit_ms: self.limit.as_millis() as u64,
            });
        }
        Ok(())
    }
}
