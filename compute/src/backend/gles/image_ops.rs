//! Image operations as fragment-shader passes over rectangles of an image.
//!
//! [`PreparedOp::run`] draws one operation from a source texture holding
//! some rectangle of the input image to a new texture holding a given
//! rectangle of the output. The whole image is one such rectangle; a tile
//! with its halo is another: the same passes serve both, since shaders work
//! in image coordinates (see `image_common.glsl`).

use std::ops::Range;
use std::time::Instant;

use wimpy_schema::job::{FlipAxis, ImageOp, Rotation};

use super::gpu::{Gpu, Texture, TextureFormat, Uniforms, device_error};
use super::programs::ProgramId;
use super::tiling::{Axis, Rect, TilePlan, partition};
use crate::kernels::{self, Kernel1d, ResizePass};
use crate::{ComputeError, Deadline, StageTimes};

/// A texture holding the pixels of `rect` of its stage's image.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placed {
    pub texture: Texture,
    pub rect: Rect,
}

/// A per-pixel operation: each output pixel reads only its own input pixel.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pointwise {
    Grayscale,
    Invert,
    BrightnessContrast { brightness: i32, contrast_q8: i32 },
    Threshold { level: u8 },
}

/// Where one output axis reads: input coordinate `offset ± i` on `axis`.
#[derive(Debug, Clone, Copy)]
pub(super) struct AxisMap {
    axis: Axis,
    reversed: bool,
    offset: u32,
}

impl AxisMap {
    fn straight(axis: Axis, offset: u32) -> AxisMap {
        AxisMap { axis, reversed: false, offset }
    }

    fn reversed(axis: Axis, last: u32) -> AxisMap {
        AxisMap { axis, reversed: true, offset: last }
    }

    fn input(&self, i: u32) -> u32 {
        if self.reversed { self.offset - i } else { self.offset + i }
    }
}

/// An operation with its weights worked out, ready to draw over any tile.
#[derive(Debug, Clone)]
pub(super) enum PreparedOp {
    Pointwise(Pointwise),
    Gaussian(Kernel1d),
    BoxBlur {
        radius: u32,
    },
    Sharpen {
        kernel: Kernel1d,
        amount_q8: i32,
    },
    Sobel,
    Convolve {
        size: u32,
        weights: Vec<i32>,
    },
    /// A pass is `None` where that side keeps its size, as in the reference.
    Resize {
        vertical: Option<ResizePass>,
        horizontal: Option<ResizePass>,
    },
    /// Crop, flip or rotate: output x reads by `x`, output y by `y`.
    Remap {
        x: AxisMap,
        y: AxisMap,
    },
}

impl PreparedOp {
    /// `op` over a `width × height` input. The caller has checked the output size.
    pub fn new(op: &ImageOp, width: u32, height: u32) -> PreparedOp {
        let (last_x, last_y) = (width - 1, height - 1);
        match op {
            ImageOp::Grayscale => PreparedOp::Pointwise(Pointwise::Grayscale),
            ImageOp::Invert => PreparedOp::Pointwise(Pointwise::Invert),
            ImageOp::BrightnessContrast { brightness, contrast } => {
                PreparedOp::Pointwise(Pointwise::BrightnessContrast {
                    brightness: *brightness,
                    contrast_q8: kernels::amount_q8(*contrast),
                })
            }
            ImageOp::Threshold(level) => PreparedOp::Pointwise(Pointwise::Threshold { level: *level }),
            ImageOp::GaussianBlur { sigma } => PreparedOp::Gaussian(Kernel1d::gaussian(*sigma)),
            ImageOp::BoxBlur { radius } => PreparedOp::BoxBlur { radius: *radius },
            ImageOp::Sharpen { sigma, amount } => {
                PreparedOp::Sharpen { kernel: Kernel1d::gaussian(*sigma), amount_q8: kernels::amount_q8(*amount) }
            }
            ImageOp::Sobel => PreparedOp::Sobel,
            ImageOp::Convolve(k) => PreparedOp::Convolve { size: k.size, weights: kernels::conv_weights(&k.weights) },
            ImageOp::Resize { width: out_width, height: out_height, filter } => PreparedOp::Resize {
                vertical: (*out_height != height).then(|| ResizePass::new(height, *out_height, *filter)),
                horizontal: (*out_width != width).then(|| ResizePass::new(width, *out_width, *filter)),
            },
            ImageOp::Crop { x, y, .. } => {
                PreparedOp::Remap { x: AxisMap::straight(Axis::X, *x), y: AxisMap::straight(Axis::Y, *y) }
            }
            ImageOp::Flip(FlipAxis::Horizontal) => {
                PreparedOp::Remap { x: AxisMap::reversed(Axis::X, last_x), y: AxisMap::straight(Axis::Y, 0) }
            }
            ImageOp::Flip(FlipAxis::Vertical) => {
                PreparedOp::Remap { x: AxisMap::straight(Axis::X, 0), y: AxisMap::reversed(Axis::Y, last_y) }
            }
            // Clockwise: output (x, y) is input (y, h - 1 - x).
            ImageOp::Rotate(Rotation::Quarter) => {
                PreparedOp::Remap { x: AxisMap::reversed(Axis::Y, last_y), y: AxisMap::straight(Axis::X, 0) }
            }
            ImageOp::Rotate(Rotation::Half) => {
                PreparedOp::Remap { x: AxisMap::reversed(Axis::X, last_x), y: AxisMap::reversed(Axis::Y, last_y) }
            }
            // Output (x, y) is input (w - 1 - y, x).
            ImageOp::Rotate(Rotation::ThreeQuarters) => {
                PreparedOp::Remap { x: AxisMap::straight(Axis::Y, 0), y: AxisMap::reversed(Axis::X, last_x) }
            }
        }
    }

    /// Whether the output equals the input (a resize to the same size).
    pub fn is_identity(&self) -> bool {
        matches!(self, PreparedOp::Resize { vertical: None, horizontal: None })
    }

    /// How far past a pixel a kernel reads, for the operations whose reads
    /// are a window around the pixel.
    fn halo(&self) -> Option<u32> {
        match self {
            PreparedOp::Pointwise(_) => Some(0),
            PreparedOp::Gaussian(kernel) | PreparedOp::Sharpen { kernel, .. } => Some(kernel.radius),
            PreparedOp::BoxBlur { radius } => Some(*radius),
            PreparedOp::Sobel => Some(1),
            PreparedOp::Convolve { size, .. } => Some(size / 2),
            PreparedOp::Resize { .. } | PreparedOp::Remap { .. } => None,
        }
    }

    /// The input axis output axis `axis` reads along.
    fn input_axis(&self, axis: Axis) -> Axis {
        match (self, axis) {
            (PreparedOp::Remap { x, .. }, Axis::X) => x.axis,
            (PreparedOp::Remap { y, .. }, Axis::Y) => y.axis,
            _ => axis,
        }
    }

    /// The input interval output pixel `i` of axis `axis` reads; `input_len`
    /// is the input's length along the axis read.
    fn input_of(&self, axis: Axis, i: u32, input_len: u32) -> Range<u32> {
        if let Some(halo) = self.halo() {
            return i.saturating_sub(halo)..i.saturating_add(halo).saturating_add(1).min(input_len);
        }
        match self {
            PreparedOp::Resize { vertical, horizontal } => {
                let pass = match axis {
                    Axis::X => horizontal,
                    Axis::Y => vertical,
                };
                match pass {
                    Some(pass) => {
                        let taps = &pass.taps[i as usize];
                        let end = (taps.start + taps.weights.len().max(1) as u32).min(input_len);
                        taps.start.min(end.saturating_sub(1))..end
                    }
                    None => i..i + 1,
                }
            }
            PreparedOp::Remap { x, y } => {
                let v = match axis {
                    Axis::X => x.input(i),
                    Axis::Y => y.input(i),
                };
                v..v + 1
            }
            _ => i..i + 1,
        }
    }

    /// The tiles of this operation from a `width × height` input to an
    /// `out_width × out_height` output, no texture side over `max`.
    pub fn plan(&self, width: u32, height: u32, out_width: u32, out_height: u32, max: u32) -> Result<TilePlan, String> {
        let len_of = |axis| match axis {
            Axis::X => width,
            Axis::Y => height,
        };
        let (x_reads, y_reads) = (self.input_axis(Axis::X), self.input_axis(Axis::Y));
        let columns = partition(out_width, max, |i| self.input_of(Axis::X, i, len_of(x_reads)))?;
        let rows = partition(out_height, max, |i| self.input_of(Axis::Y, i, len_of(y_reads)))?;
        Ok(TilePlan { columns, rows, columns_read: x_reads })
    }

    /// Draws this operation from `source` into a new texture holding `output`
    /// of the output image. `source` must hold every input pixel `output`
    /// reads (see [`PreparedOp::plan`]).
    pub fn run(
        &self,
        gpu: &mut Gpu,
        source: &Placed,
        output: Rect,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<Placed, ComputeError> {
        let mut passes = Passes { gpu, deadline, times, started: false };
        match self {
            PreparedOp::Pointwise(op) => passes.image(op.program(), source, output, |u| op.set_uniforms(u)),
            PreparedOp::Gaussian(kernel) => {
                let weights = passes.weights(kernel)?;
                let blurred = passes.separable(ProgramId::GaussianPass, source, output, kernel.radius, Some(&weights));
                passes.gpu.release(weights);
                blurred
            }
            PreparedOp::BoxBlur { radius } => passes.separable(ProgramId::BoxPass, source, output, *radius, None),
            PreparedOp::Sharpen { kernel, amount_q8 } => {
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
            PreparedOp::Sobel => passes.image(ProgramId::Sobel, source, output, |_| {}),
            PreparedOp::Convolve { size, weights } => {
                let texture = passes.upload_i32(*size, *size, weights)?;
                let convolved = passes.image(ProgramId::Convolve, source, output, |u| {
                    u.int("u_size", *size as i32);
                    u.sampler("u_weights", &texture);
                });
                passes.gpu.release(texture);
                convolved
            }
            PreparedOp::Resize { vertical, horizontal } => passes.resize(vertical, horizontal, source, output),
            PreparedOp::Remap { x, y } => {
                // Rows of the integer affine map from output to input coordinates.
                let mut map_x = [0i32; 3];
                let mut map_y = [0i32; 3];
                for (i, axis_map) in [x, y].into_iter().enumerate() {
                    let row = match axis_map.axis {
                        Axis::X => &mut map_x,
                        Axis::Y => &mut map_y,
                    };
                    row[i] = if axis_map.reversed { -1 } else { 1 };
                    row[2] = axis_map.offset as i32;
                }
                passes.image(ProgramId::Remap, source, output, |u| {
                    u.ivec3("u_map_x", map_x);
                    u.ivec3("u_map_y", map_y);
                })
            }
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
