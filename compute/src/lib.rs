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
pub mod environment;
mod error;
pub mod geometry;
pub mod image;
pub mod kernels;
mod limits;
#[cfg(any(feature = "gles", feature = "wgpu"))]
mod plan;

pub use backend::{Backend, BackendInfo, BackendKind};
pub use engine::{Engine, EngineConfig, JobOutput, ProbeFailure, execute};
pub use error::ComputeError;
pub use image::Image;
pub use limits::{Deadline, Limits};

/// Where a job's time went, per stage (decode, upload, kernel, download,
/// encode); the same type the SDK reads results into.
pub use wimpy_schema::job::StageTimes;
