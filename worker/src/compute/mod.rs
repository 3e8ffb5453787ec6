//! The compute engine: jobs of image operations and hashes run next to the
//! data, on the best backend this machine has.
//!
//! Every backend computes the same integers. The definitions live in
//! [`kernels`] (fixed-point weights, rounding, edge rules) and the `cpu`
//! backend is their plain, scalar reading; the faster backends must agree with
//! it within ±1 per 8-bit channel (in practice they agree exactly) and
//! bit-for-bit on hashes.

pub mod backend;
mod engine;
mod error;
pub mod geometry;
pub mod image;
pub mod kernels;
mod limits;

pub use backend::{Backend, BackendInfo, BackendKind};
pub use engine::{Engine, EngineConfig, JobOutput, ProbeFailure, execute};
pub use error::ComputeError;
pub use image::Image;
pub use limits::{Deadline, Limits};

use std::time::Duration;

/// Where a job's time went, per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Bytes to pixels.
    pub decode: Duration,
    /// Host memory to the device (zero on CPU backends).
    pub upload: Duration,
    /// The operations themselves.
    pub kernel: Duration,
    /// Device memory back to the host (zero on CPU backends).
    pub download: Duration,
    /// Pixels to bytes.
    pub encode: Duration,
}

impl StageTimes {
    /// The sum of every stage.
    pub fn total(&self) -> Duration {
        self.decode + self.upload + self.kernel + self.download + self.encode
    }
}
