//! Image operations as fragment-shader passes over rectangles of an image.
//!
//! [`draw`] draws one operation (a [`Plan`]) from a source texture holding
//! some rectangle of the input image to a new texture holding a given
//! rectangle of the output. The whole image is one such rectangle; a tile
//! with its halo is another: the same passes serve both, since shaders work
//! in image coordinates (see `image_common.glsl`).

use std::time::Instant;

use super::gpu::{Gpu, Texture, TextureFormat, Uniforms, device_error};
use super::programs::ProgramId;
use super::tiling::{TilePlan, partition};
use crate::kernels::{Kernel1d, ResizePass};
use crate::plan::{Axis, Pass, Plan, Pointwise, Rect};
use crate::{ComputeError, Deadline, StageTimes};

/// A texture holding the pixels of `rect` of its stage's image.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placed {
    pub texture: Texture,
    pub rect: Rect,
}

/// The tiles of `plan` from its input to an `out_width × out_height`
/// output, no texture side over `max`: runs along each output axis, grown
/// while what they read (as the plan says) fits in a texture.
pub(super) fn tile_plan(plan: &Plan, out_width: u32, out_height: u32, max: u32) -> Result<TilePlan, String> {
    let columns = partition(out_width, max, |i| plan.reads(Axis::X, i..i + 1))?;
    let rows = partition(out_height, max, |i| plan.reads(Axis::Y, i..i + 1))?;
    Ok(TilePlan { columns, rows, columns_read: plan.input_axis(Axis::X) })
}

/// Draws `plan` from `source` into a new texture holding `output` of the
/// output image. `source` must hold every input pixel `output` reads (see
/// [`tile_plan`]).
pub(super) fn draw(
    plan: &Plan,
    gpu: &mut Gpu,
    source: &Placed,
    output: Rect,
    deadline: &Deadline,
    times: &mut StageTimes,
) -> Result<Placed, ComputeError> {
    let mut passes = Passes { gpu, deadline, times, started: false };
    match &plan.pass {
        Pass::Pointwise(op) => passes.image(op.program(), source, output, |u| op.set_uniforms(u)),
        Pass::Gaussian(kernel) => {
            let weights = passes.weights(kernel)?;
            let blurred = passes.separable(ProgramId::GaussianPass, source, output, kernel.radius, Some(&weights));
            passes.gpu.release(weights);
            blurred
        }
        Pass::BoxBlur { radius } => passes.separable(ProgramId::BoxPass, source, output, *radius, None),
        Pass::Sharpen { kernel, amount_q8 } => {
            let weights = passes.weights(kernel)?;
            let blurred = passes.separable(ProgramId::GaussianPass, source, output, kernel.radius, Some(&weights));
            passes.gpu.release(weights);
            let blurred = blurred?;
            let sharpened = passes.image(ProgramId::Unsharp, source, output, |u| {
                u.sampler("u_blurred", &blurred.texture);
                u.ivec2("u_blurred_origin", blurred.rect.origin());
                u.int("u_amount_q8", *amount_q8);
            });
            passes.gpu.release(blurred.texture);
            sharpened
        }
        Pass::Sobel => passes.image(ProgramId::Sobel, source, output, |_| {}),
        Pass::Convolve { size, weights } => {
            let texture = passes.upload_i32(*size, *size, weights)?;
            let convolved = passes.image(ProgramId::Convolve, source, output, |u| {
                u.int("u_size", *size as i32);
                u.sampler("u_weights", &texture);
            });
            passes.gpu.release(texture);
            convolved
        }
        Pass::Resize { vertical, horizontal } => passes.resize(vertical, horizontal, source, output),
        Pass::Remap { x, y } => {
            let m = Plan::affine(x, y);
            passes.image(ProgramId::Remap, source, output, |u| {
                u.ivec3("u_map_x", [m[0], m[1], m[2]]);
                u.ivec3("u_map_y", [m[3], m[4], m[5]]);
            })
        }
    }
}

impl Pointwise {
    fn program(self) -> ProgramId {
        match self {
            Pointwise::Grayscale => ProgramId::Grayscale,
            Pointwise::Invert => ProgramId::Invert,
            Pointwise::BrightnessContrast { .. } => ProgramId::BrightnessContrast,
            Pointwise::Threshold { .. } => ProgramId::Threshold,
        }
    }

    fn set_uniforms(self, u: &mut Uniforms<'_>) {
        match self {
            Pointwise::Grayscale | Pointwise::Invert => {}
            Pointwise::BrightnessContrast { brightness, contrast_q8 } => {
                u.int("u_brightness", brightness);
                u.int("u_contrast_q8", contrast_q8);
            }
            Pointwise::Threshold { level } => u.int("u_level", i32::from(level)),
        }
    }
}

/// The passes of one operation on one tile: draws, with the deadline checked
/// between them and the time of each stage counted.
struct Passes<'a> {
    gpu: &'a mut Gpu,
    deadline: &'a Deadline,
    times: &'a mut StageTimes,
    /// Whether a pass has been drawn (the caller checked the deadline
    /// before the first).
    started: bool,
}

impl Passes<'_> {
    /// One pass of an image program from `source` into a new texture holding `target`.
    fn image(
        &mut self,
        program: ProgramId,
        source: &Placed,
        target: Rect,
        set_uniforms: impl FnOnce(&mut Uniforms<'_>),
    ) -> Result<Placed, ComputeError> {
        if self.started {
            self.deadline.check()?;
        }
        self.started = true;
        let texture = self.gpu.texture(TextureFormat::Rgba8, target.width, target.height)?;
        let start = Instant::now();
        let drawn = self.gpu.draw(program, &[texture], 0, 0, target.width, target.height, |u| {
            u.sampler("u_src", &source.texture);
            u.ivec2("u_src_origin", source.rect.origin());
            u.ivec2("u_dst_origin", target.origin());
            set_uniforms(u);
        });
        self.times.kernel += start.elapsed();
        match drawn {
            Ok(()) => Ok(Placed { texture, rect: target }),
            Err(e) => {
                self.gpu.release(texture);
                Err(e)
            }
        }
    }

    /// A horizontal then a vertical pass of a separable kernel. The
    /// horizontal pass covers only the output's columns but every row of the
    /// source, which holds the rows the vertical pass reads.
    fn separable(
        &mut self,
        program: ProgramId,
        source: &Placed,
        output: Rect,
        radius: u32,
        weights: Option<&Texture>,
    ) -> Result<Placed, ComputeError> {
        let set = |step: [i32; 2]| {
            move |u: &mut Uniforms<'_>| {
                u.ivec2("u_step", step);
                u.int("u_radius", radius as i32);
                if let Some(weights) = weights {
                    u.sampler("u_weights", weights);
                }
            }
        };
        let rows = Rect { x: output.x, y: source.rect.y, width: output.width, height: source.rect.height };
        let horizontal = self.image(program, source, rows, set([1, 0]))?;
        let vertical = self.image(program, &horizontal, output, set([0, 1]));
        self.gpu.release(horizontal.texture);
        vertical
    }

    /// The vertical resize pass (output rows, every source column), then the
    /// horizontal one (output columns), each only where the size changes.
    fn resize(
        &mut self,
        vertical: &Option<ResizePass>,
        horizontal: &Option<ResizePass>,
        source: &Placed,
        output: Rect,
    ) -> Result<Placed, ComputeError> {
        let after_vertical = match vertical {
            Some(pass) => {
                let target = Rect { x: source.rect.x, y: output.y, width: source.rect.width, height: output.height };
                Some(self.resize_pass(pass, Axis::Y, source, target)?)
            }
            None => None,
        };
        let Some(pass) = horizontal else {
            return after_vertical.ok_or_else(|| device_error("a resize to the same size has no passes"));
        };
        let result = self.resize_pass(pass, Axis::X, after_vertical.as_ref().unwrap_or(source), output);
        if let Some(v) = after_vertical {
            self.gpu.release(v.texture);
        }
        result
    }

    fn resize_pass(
        &mut self,
        pass: &ResizePass,
        axis: Axis,
        source: &Placed,
        target: Rect,
    ) -> Result<Placed, ComputeError> {
        let outputs = match axis {
            Axis::X => target.x..target.x + target.width,
            Axis::Y => target.y..target.y + target.height,
        };
        let taps = &pass.taps[outputs.start as usize..outputs.end as usize];
        // Every row of the weight texture is as wide as the widest; shorter
        // rows are padded with zero weights.
        let tap_count = taps.iter().map(|t| t.weights.len()).max().unwrap_or(0).max(1);
        let starts: Vec<i32> = taps.iter().map(|t| t.start as i32).collect();
        let mut weights = vec![0i32; tap_count * taps.len()];
        for (row, t) in weights.chunks_exact_mut(tap_count).zip(taps) {
            for (w, &tap) in row.iter_mut().zip(&t.weights) {
                *w = i32::from(tap);
            }
        }
        let starts = self.upload_i32(taps.len() as u32, 1, &starts)?;
        let weights = match self.upload_i32(tap_count as u32, taps.len() as u32, &weights) {
            Ok(weights) => weights,
            Err(e) => {
                self.gpu.release(starts);
                return Err(e);
            }
        };
        let step = match axis {
            Axis::X => [1, 0],
            Axis::Y => [0, 1],
        };
        let resized = self.image(ProgramId::ResizePass, source, target, |u| {
            u.ivec2("u_axis", step);
            u.int("u_first_output", outputs.start as i32);
            u.sampler("u_tap_starts", &starts);
            u.sampler("u_tap_weights", &weights);
            u.int("u_tap_count", tap_count as i32);
            u.int("u_precision", pass.precision as i32);
        });
        self.gpu.release(starts);
        self.gpu.release(weights);
        resized
    }

    /// A kernel's weights as a one-row R32I texture.
    fn weights(&mut self, kernel: &Kernel1d) -> Result<Texture, ComputeError> {
        let weights: Vec<i32> = kernel.weights.iter().map(|&w| i32::from(w)).collect();
        self.upload_i32(weights.len() as u32, 1, &weights)
    }

    /// `values` as a `width × height` R32I texture.
    fn upload_i32(&mut self, width: u32, height: u32, values: &[i32]) -> Result<Texture, ComputeError> {
        let texture = self.gpu.texture(TextureFormat::R32, width, height)?;
        let start = Instant::now();
        let uploaded = self.gpu.upload(&texture, values);
        self.times.upload += start.elapsed();
        match uploaded {
            Ok(()) => Ok(texture),
            Err(e) => {
                self.gpu.release(texture);
                Err(e)
            }
        }
    }
}
