//! The wgpu backend: every operation as WGSL compute shaders on Vulkan (a
//! GPU through its driver, v3dv on a Raspberry Pi, or Mesa's lavapipe in
//! software).
//!
//! # Design
//!
//! - **Same integers as the reference.** The shaders (`shaders/wgsl/`,
//!   embedded at build time) use only i32/u32 arithmetic and compute exactly
//!   the sums, roundings and edge rules of [`kernels`](crate::kernels),
//!   so results equal the `cpu` backend bit for bit.
//! - **Images stay on the device.** An image is a storage buffer of packed
//!   RGBA8 words. It is uploaded once, every operation reads one buffer and
//!   writes a fresh one (blurs and resizes through an intermediate buffer),
//!   and the result is read back once. Each operation is one submission,
//!   so the job's deadline is checked between operations.
//! - **Large images are tiled.** A device binds at most
//!   `max_storage_buffer_binding_size` bytes per buffer. An operation whose
//!   input, output or weights would not fit runs in bands of output rows
//!   instead: each tile uploads just the input window its band reads (the
//!   band's rows plus the kernel's reach above and below, the rows a resize
//!   band's taps cover, or the columns a quarter turn reads), runs the same
//!   kernels, and reads its band back. Kernels see window and band in whole
//!   image coordinates, so they clamp edges exactly as on a whole image. A
//!   limit can be forced lower ([`WgpuBackend::with_max_buffer_bytes`]) to
//!   test this on small images.
//! - **Dispatch limits.** Kernels loop over their output (grid-stride), so a
//!   dispatch capped at `max_compute_workgroups_per_dimension` still covers
//!   every pixel.
//! - **Hashes.** BLAKE3 hashes its 1 KiB chunks in parallel and merges the
//!   tree on the device, a dispatch per level; SHA-256 runs in one
//!   invocation; further rounds loop in one invocation, in batches. See
//!   [`hash`].
//! - **Errors.** Every piece of device work runs inside wgpu error scopes;
//!   validation and out-of-memory errors, a lost device, or a failed
//!   mapping become [`ComputeError::Device`], never a panic.
//!
//! Pipelines are compiled on first use and cached for the backend's life.
//! Like every GPU backend it stays on the thread that created it.

mod context;
mod hash;
mod image_ops;

use std::time::Instant;

use wimpy_schema::job::{HashAlgo, HashOp, ImageOp};

use self::context::Gpu;
pub use self::context::InitError;
use self::image_ops::{DeviceImage, Prepared};
use super::{Backend, BackendInfo, BackendKind, cpu};
use crate::{ComputeError, Deadline, Image, Limits, StageTimes, geometry};

/// WGSL compute shaders through wgpu, on Vulkan.
#[derive(Debug)]
pub struct WgpuBackend {
    gpu: Gpu,
    info: BackendInfo,
}

/// Where the image between two operations is.
enum Held {
    Host(Image),
    Device(DeviceImage),
}

impl WgpuBackend {
    /// Opens the best Vulkan adapter (a high-performance GPU when there is
    /// one, else any, lavapipe included) with its own limits.
    pub fn new() -> Result<WgpuBackend, InitError> {
        let gpu = Gpu::open()?;
        let adapter = gpu.adapter();
        let info = BackendInfo {
            kind: BackendKind::Wgpu,
            device: format!("{} ({}, {})", adapter.name, adapter.backend, adapter.driver),
            software: adapter.device_type == ::wgpu::DeviceType::Cpu,
        };
        Ok(WgpuBackend { gpu, info })
    }

    /// The same backend binding at most `bytes` per buffer (never more than
    /// the device allows), so tests can make small images take the tiled path.
    pub fn with_max_buffer_bytes(mut self, bytes: u64) -> WgpuBackend {
        self.gpu.limit_buffer_bytes(bytes);
        self
    }

    /// The same backend dispatching at most `groups` workgroups per dimension
    /// (never more than the device allows), so tests can check that kernels
    /// cover what a capped dispatch leaves over.
    pub fn with_max_workgroups(mut self, groups: u32) -> WgpuBackend {
        self.gpu.limit_workgroups(groups);
        self
    }

    /// The most bytes one buffer may hold; larger images run in tiles.
    pub fn max_buffer_bytes(&self) -> u64 {
        self.gpu.max_buffer_bytes()
    }

    fn to_device(&self, held: Held, times: &mut StageTimes) -> Result<DeviceImage, ComputeError> {
        let image = match held {
            Held::Device(image) => return Ok(image),
            Held::Host(image) => image,
        };
        let start = Instant::now();
        let buffer = self.gpu.checked("uploading the image", || {
            let buffer = self.gpu.storage_with("image", image.pixels());
            self.gpu.flush_uploads()?;
            Ok(buffer)
        })?;
        times.upload += start.elapsed();
        Ok(DeviceImage { buffer, width: image.width(), height: image.height() })
    }

    fn to_host(&self, held: Held, times: &mut StageTimes) -> Result<Image, ComputeError> {
        let image = match held {
            Held::Host(image) => return Ok(image),
            Held::Device(image) => image,
        };
        let start = Instant::now();
        let bytes = u64::from(image.width) * u64::from(image.height) * 4;
        let pixels = self.gpu.checked("reading the image back", || self.gpu.read(&image.buffer, bytes))?;
        times.download += start.elapsed();
        Ok(Image::new(image.width, image.height, pixels))
    }
}

impl Backend for WgpuBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn run_image(
        &mut self,
        image: Image,
        ops: &[ImageOp],
        limits: &Limits,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<Image, ComputeError> {
        let mut held = Held::Host(image);
        for op in ops {
            deadline.check()?;
            let input = match &held {
                Held::Host(image) => (image.width(), image.height()),
                Held::Device(image) => (image.width, image.height),
            };
            let output = geometry::output_size(op, input.0, input.1, limits)?;
            if input.0 == 0 || input.1 == 0 || output.0 == 0 || output.1 == 0 {
                // No pixels, nothing to dispatch (and no buffer can be
                // empty): the reference's definition gives the shape.
                let image = self.to_host(held, times)?;
                held = Held::Host(cpu::apply(op, image));
                continue;
            }
            if self.info.software {
                refuse_long_loops(op, input, output)?;
            }
            let plan = Prepared::new(op, input, output);
            if plan.is_identity() {
                continue;
            }
            held = if plan.fits_whole(self.gpu.max_buffer_bytes()) {
                let image = self.to_device(held, times)?;
                let start = Instant::now();
                let result = plan.run_on_device(&self.gpu, &image)?;
                times.kernel += start.elapsed();
                Held::Device(result)
            } else {
                let image = self.to_host(held, times)?;
                Held::Host(plan.run_tiled(&self.gpu, &image, deadline, times)?)
            };
        }
        self.to_host(held, times)
    }

    fn hash(
        &mut self,
        data: &[u8],
        op: HashOp,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<[u8; 32], ComputeError> {
        match op.algo {
            HashAlgo::Sha256 => hash::sha256(&self.gpu, data, op.rounds, deadline, times),
            HashAlgo::Blake3 => hash::blake3(&self.gpu, data, op.rounds, deadline, times),
        }
    }
}

/// Mesa's software Vulkan (lavapipe) silently stops a shader invocation after
/// 65,535 loop iterations. Every kernel loops at most over one pixel's taps,
/// and only a resize can have that many (shrinking a side tens of thousands
/// of times): refuse it there rather than return a wrong image.
fn refuse_long_loops(op: &ImageOp, input: (u32, u32), output: (u32, u32)) -> Result<(), ComputeError> {
    const SAFE_TAPS: f64 = 32_768.0;
    if let ImageOp::Resize { filter, .. } = op {
        let support = crate::kernels::filter_support(*filter);
        for (i, o) in [(input.0, output.0), (input.1, output.1)] {
            let taps = 2.0 * support * (f64::from(i) / f64::from(o)).max(1.0) + 1.0;
            if taps > SAFE_TAPS {
                return Err(ComputeError::Device {
                    backend: BackendKind::Wgpu,
                    reason: format!(
                        "this resize needs {taps:.0} taps per pixel; the software Vulkan driver stops \
                         shaders after 65535 loop steps (use another backend)"
                    ),
                });
            }
        }
    }
    Ok(())
}
