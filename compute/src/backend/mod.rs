//! The backends a job can run on, behind one trait.
//!
//! `cpu` is the scalar definition of every operation; `simd` is the same
//! arithmetic on NEON (aarch64) or SSE2/AVX2 (x86_64), picked at run time;
//! `gles` runs it as OpenGL ES 3.0 fragment-shader passes through headless
//! EGL; `wgpu` as WGSL compute shaders.

pub mod cpu;
#[cfg(feature = "gles")]
pub mod gles;
pub mod simd;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use std::time::Instant;

use wimpy_schema::job::{HashOp, ImageOp};

use super::{ComputeError, Deadline, Image, Limits, StageTimes};

pub use wimpy_schema::job::{BackendKind, UnknownBackend};

/// What a probed backend is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// Its family.
    pub kind: BackendKind,
    /// What runs it: the instruction set, or the GPU and driver.
    pub device: String,
    /// A GPU API implemented in software (Mesa llvmpipe, lavapipe): correct,
    /// but no faster than the CPU.
    pub software: bool,
}

/// Something that runs image operations and hashes.
///
/// Not `Send`: a GPU context belongs to the thread that made it, so GPU
/// backends are created on, and stay on, their own thread.
pub trait Backend {
    /// What this backend is.
    fn info(&self) -> &BackendInfo;

    /// Runs `ops` in order over `image`, checking `deadline` between passes
    /// and every output size against `limits`. Adds its upload, kernel and
    /// download time to `times`.
    fn run_image(
        &mut self,
        image: Image,
        ops: &[ImageOp],
        limits: &Limits,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<Image, ComputeError>;

    /// Hashes `data` (`op.rounds` times), checking `deadline` between rounds.
    fn hash(
        &mut self,
        data: &[u8],
        op: HashOp,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<[u8; 32], ComputeError>;
}

/// `ops` one after another on the host, as the CPU backends run them:
/// the deadline before each, its output size checked, the time as kernel time.
pub(crate) fn run_on_host(
    mut image: Image,
    ops: &[ImageOp],
    limits: &Limits,
    deadline: &Deadline,
    times: &mut StageTimes,
    mut apply: impl FnMut(&ImageOp, Image) -> Result<Image, ComputeError>,
) -> Result<Image, ComputeError> {
    let start = Instant::now();
    for op in ops {
        deadline.check()?;
        super::geometry::output_size(op, image.width(), image.height(), limits)?;
        image = apply(op, image)?;
    }
    times.kernel += start.elapsed();
    Ok(image)
}

/// `hash` of `data`, then of its own digest `rounds − 1` more times, on the
/// host; the deadline is checked every few thousand rounds.
pub(crate) fn hash_rounds_on_host(
    data: &[u8],
    rounds: u32,
    deadline: &Deadline,
    times: &mut StageTimes,
    hash: impl Fn(&[u8]) -> [u8; 32],
) -> Result<[u8; 32], ComputeError> {
    let start = Instant::now();
    let mut digest = hash(data);
    for round in 1..rounds {
        if round % 4096 == 0 {
            deadline.check()?;
        }
        digest = hash(&digest);
    }
    times.kernel += start.elapsed();
    Ok(digest)
}
