//! The OpenGL ES 3.0 backend: every operation as fragment-shader passes,
//! through a headless EGL context (glow + khronos-egl), so it runs on a
//! Raspberry Pi 4/5's VideoCore VI/VII as well as on Mesa's llvmpipe in CI.
//!
//! # Why integer textures
//!
//! Images live in RGBA8UI textures, read with `texelFetch` from a
//! `usampler2D` and written through an `out uvec4`. Shaders never see a
//! normalised float, and compute with 32-bit `highp int`: the same
//! fixed-point sums, flooring shifts and clamps as
//! [`kernels`](crate::kernels), so the output equals the `cpu`
//! backend's bit for bit instead of within a float unit's rounding. Kernel
//! weights and resize taps are R32I textures; hashes read RGBA32UI words.
//!
//! # Passes
//!
//! One draw of a full-viewport triangle per pass, into a texture attached to
//! a framebuffer; passes ping-pong between textures. Blurs are a horizontal
//! then a vertical pass, sharpen adds an unsharp pass, resize is a vertical
//! then a horizontal pass (each only where that side changes), all as in the
//! reference. The pipeline stays on the GPU from upload to read-back while
//! the images fit in a texture.
//!
//! # Tiling
//!
//! An image, or an operation's input or output, with a side over
//! `GL_MAX_TEXTURE_SIZE` (or the smaller limit given to
//! [`GlesBackend::with_max_texture_size`]) goes through the host in tiles:
//! each output tile is drawn from an upload of just the input rectangle it
//! reads, its halo included (a blur's radius, a resize's taps, the mirror
//! image of a flip). Shaders address pixels in image coordinates and clamp
//! reads to their texture, which is the image's clamped edge where the tile
//! touches the image's edge, and never reached elsewhere: tiled output equals
//! untiled output exactly. See [`tiling`] and `shaders/gles/image_common.glsl`.

mod egl;
mod gpu;
mod hash;
mod image_ops;
mod programs;
mod tiling;

use std::time::Instant;

use wimpy_schema::job::{HashOp, ImageOp};

use self::egl::HeadlessContext;
use self::gpu::{Gpu, TextureFormat, device_error};
use self::image_ops::Placed;
use self::tiling::TilePlan;
use super::{Backend, BackendInfo, BackendKind};
use crate::plan::{Plan, Rect};
use crate::{ComputeError, Deadline, Image, Limits, StageTimes, geometry};

/// Why this machine has no `gles` backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlesUnavailable {
    /// libEGL is not installed.
    #[error("cannot load libEGL ({0}); install libegl1 and a driver (Mesa: libegl-mesa0 libgles2)")]
    NoLibrary(String),
    /// No EGL display gave an OpenGL ES 3 context.
    #[error("no EGL display gives an OpenGL ES 3 context: {0}")]
    NoContext(String),
    /// The context is not one this backend can use.
    #[error("the OpenGL ES context cannot run this backend: {0}")]
    Unsuitable(String),
}

/// The OpenGL ES 3.0 backend. Its GL context is current on the thread that
/// created it, which is the only thread that may use it.
pub struct GlesBackend {
    info: BackendInfo,
    /// Declared before `context`: dropped while the context still exists.
    gpu: Gpu,
    context: HeadlessContext,
    /// The largest texture side images are given: GL_MAX_TEXTURE_SIZE, or
    /// less to exercise tiling.
    max_tile_side: u32,
}

impl std::fmt::Debug for GlesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlesBackend")
            .field("info", &self.info)
            .field("gpu", &self.gpu)
            .field("context", &self.context)
            .field("max_tile_side", &self.max_tile_side)
            .finish()
    }
}

impl GlesBackend {
    /// Opens a headless OpenGL ES 3 context on this thread.
    pub fn new() -> Result<GlesBackend, GlesUnavailable> {
        let context = HeadlessContext::new()?;
        let gpu = Gpu::new(&context)?;
        let renderer = gpu.renderer.to_ascii_lowercase();
        let software = ["llvmpipe", "softpipe", "swrast"].iter().any(|name| renderer.contains(name));
        let info =
            BackendInfo { kind: BackendKind::Gles, device: format!("{} ({})", gpu.renderer, gpu.version), software };
        let max_tile_side = gpu.max_texture_size;
        Ok(GlesBackend { info, gpu, context, max_tile_side })
    }

    /// Like [`GlesBackend::new`], but treats images as if textures could be
    /// no larger than `max` pixels a side (at most GL_MAX_TEXTURE_SIZE), so
    /// tests can exercise tiling on small images.
    pub fn with_max_texture_size(max: u32) -> Result<GlesBackend, GlesUnavailable> {
        let mut backend = GlesBackend::new()?;
        backend.max_tile_side = max.clamp(1, backend.gpu.max_texture_size);
        Ok(backend)
    }

    /// The largest texture side images are given.
    pub fn max_texture_size(&self) -> u32 {
        self.max_tile_side
    }

    fn make_current(&self) -> Result<(), ComputeError> {
        self.context.make_current().map_err(device_error)
    }

    fn run_pipeline(
        &mut self,
        image: Image,
        ops: &[ImageOp],
        limits: &Limits,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<Image, ComputeError> {
        let mut pixels = Pixels::Host(image);
        for op in ops {
            deadline.check()?;
            let (width, height) = pixels.size();
            let (out_width, out_height) = geometry::output_size(op, width, height, limits)?;
            if u64::from(width) * u64::from(height) == 0 || u64::from(out_width) * u64::from(out_height) == 0 {
                // Nothing to draw: an empty result, as the reference gives
                // (an empty input resized has no pixels to weigh: all zero).
                pixels = Pixels::Host(Image::zeroed(out_width, out_height));
                continue;
            }
            let plan = Plan::new(op, width, height);
            if plan.is_identity() {
                continue;
            }
            let tiles = image_ops::tile_plan(&plan, out_width, out_height, self.max_tile_side)
                .map_err(|reason| device_error(format!("{op:?} on {width}x{height}: {reason}")))?;
            let input_fits = width <= self.max_tile_side && height <= self.max_tile_side;
            pixels = if tiles.is_single() && input_fits {
                let source = self.onto_device(pixels, times)?;
                let output = Rect::whole(out_width, out_height);
                let result = image_ops::draw(&plan, &mut self.gpu, &source, output, deadline, times);
                self.gpu.release(source.texture);
                Pixels::Device(result?)
            } else {
                let image = self.onto_host(pixels, times)?;
                Pixels::Host(self.run_tiled(&plan, &tiles, &image, out_width, out_height, deadline, times)?)
            };
        }
        self.onto_host(pixels, times)
    }

    /// One operation through the host, tile by tile.
    #[allow(clippy::too_many_arguments)]
    fn run_tiled(
        &mut self,
        plan: &Plan,
        tiles: &TilePlan,
        image: &Image,
        out_width: u32,
        out_height: u32,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<Image, ComputeError> {
        let mut out = Image::zeroed(out_width, out_height);
        let out_stride = out.stride();
        for (output, input) in tiles.tiles() {
            deadline.check()?;
            let source = self.upload(image, input, times)?;
            let result = image_ops::draw(plan, &mut self.gpu, &source, output, deadline, times);
            self.gpu.release(source.texture);
            let result = result?;
            let start = Instant::now();
            let pixels = self.gpu.read_rgba8(&result.texture);
            times.download += start.elapsed();
            self.gpu.release(result.texture);
            let tile_stride = output.width as usize * 4;
            for (row, tile_row) in pixels?.chunks_exact(tile_stride).enumerate() {
                let at = (output.y as usize + row) * out_stride + output.x as usize * 4;
                out.pixels_mut()[at..at + tile_stride].copy_from_slice(tile_row);
            }
        }
        Ok(out)
    }

    /// The rectangle `rect` of `image` in a new texture.
    fn upload(&mut self, image: &Image, rect: Rect, times: &mut StageTimes) -> Result<Placed, ComputeError> {
        let texture = self.gpu.texture(TextureFormat::Rgba8, rect.width, rect.height)?;
        let start = Instant::now();
        let uploaded = self.gpu.upload_image_rect(&texture, image, rect.x, rect.y);
        times.upload += start.elapsed();
        uploaded?;
        Ok(Placed { texture, rect })
    }

    fn onto_device(&mut self, pixels: Pixels, times: &mut StageTimes) -> Result<Placed, ComputeError> {
        match pixels {
            Pixels::Device(placed) => Ok(placed),
            Pixels::Host(image) => self.upload(&image, Rect::whole(image.width(), image.height()), times),
        }
    }

    fn onto_host(&mut self, pixels: Pixels, times: &mut StageTimes) -> Result<Image, ComputeError> {
        match pixels {
            Pixels::Host(image) => Ok(image),
            Pixels::Device(placed) => {
                let start = Instant::now();
                let read = self.gpu.read_rgba8(&placed.texture);
                times.download += start.elapsed();
                self.gpu.release(placed.texture);
                Ok(Image::new(placed.rect.width, placed.rect.height, read?))
            }
        }
    }
}

/// Where the current stage of a pipeline is.
enum Pixels {
    Host(Image),
    /// The whole image, in a texture.
    Device(Placed),
}

impl Pixels {
    fn size(&self) -> (u32, u32) {
        match self {
            Pixels::Host(image) => (image.width(), image.height()),
            Pixels::Device(placed) => (placed.rect.width, placed.rect.height),
        }
    }
}

impl Backend for GlesBackend {
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
        self.make_current()?;
        let result = self.run_pipeline(image, ops, limits, deadline, times);
        self.gpu.end_job();
        result
    }

    fn hash(
        &mut self,
        data: &[u8],
        op: HashOp,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<[u8; 32], ComputeError> {
        self.make_current()?;
        let result = hash::hash(&mut self.gpu, data, op, deadline, times);
        self.gpu.end_job();
        result
    }
}
