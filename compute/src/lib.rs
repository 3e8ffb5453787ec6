//! The compute engine: jobs of image operations and hashes run next to the
//! data, on the best backend this machine has.
//!
//! Every backend computes the same integers. The definitions live in
//! [`kernels`] (fixed-point weights, rounding, edge rules) and the `cpu`
//! backend is their plain, scalar reading; the faster backends must agree with
//! it within ±1 per 8-bit channel (in practice they agree exactly) and
//! bit-for-bit on hashes.
//!
//! The crate owns the operations' arithmetic ([`kernels`], [`geometry`]),
//! the backends ([`backend`]) and the engine that queues jobs on them
//! ([`Engine`]). It reads the job types of the contract (wimpy-schema) and
//! must never depend on the store or the network. The GPU backends are
//! behind the cargo features `gles` and `wgpu` (both on by default); a
//! `--no-default-features` build has `cpu` and `simd` only.

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
