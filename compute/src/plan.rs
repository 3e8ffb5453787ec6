//! One image operation prepared for one input size, as the GPU backends run
//! it: the integers its passes compute with (weights, taps, maps, all from
//! [`kernels`]) and, along each output axis, which input pixels each output
//! pixel reads.
//!
//! The GLES backend cuts its tiles, and the wgpu backend its bands of rows,
//! by what [`Plan::reads`] says a run of output pixels reads: a kernel's
//! halo, a resize's taps, a flip's mirror image or a rotation's swapped
//! axes are worked out here once, for both.

use std::ops::Range;

use wimpy_schema::job::{FlipAxis, ImageOp, Rotation};

use crate::kernels::{self, Kernel1d, ResizePass};

/// An image axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    X,
    Y,
}

/// A rectangle of an image, in the whole image's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// The whole of a `width × height` image.
    pub fn whole(width: u32, height: u32) -> Rect {
        Rect { x: 0, y: 0, width, height }
    }

    /// Full rows `y..y + height` of an image `width` wide.
    #[cfg(feature = "wgpu")]
    pub fn rows(width: u32, y: u32, height: u32) -> Rect {
        Rect { x: 0, y, width, height }
    }

    /// The rectangle spanning `columns` × `rows`.
    pub fn spanning(columns: &Range<u32>, rows: &Range<u32>) -> Rect {
        Rect { x: columns.start, y: rows.start, width: columns.end - columns.start, height: rows.end - rows.start }
    }

    /// The top-left corner, as a shader's ivec2.
    #[cfg(feature = "gles")]
    pub fn origin(&self) -> [i32; 2] {
        [self.x as i32, self.y as i32]
    }

    /// The columns and the rows it spans.
    #[cfg(feature = "wgpu")]
    pub fn ranges(&self) -> (Range<u32>, Range<u32>) {
        (self.x..self.x + self.width, self.y..self.y + self.height)
    }

    /// Bytes of its RGBA8 pixels.
    #[cfg(feature = "wgpu")]
    pub fn bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 4
    }
}

/// A per-pixel operation: each output pixel reads only its own input pixel.
#[derive(Debug, Clone, Copy)]
pub enum Pointwise {
    Grayscale,
    Invert,
    BrightnessContrast { brightness: i32, contrast_q8: i32 },
    Threshold { level: u8 },
}

/// Where one output axis reads: input coordinate `offset ± i` on `axis`.
#[derive(Debug, Clone, Copy)]
pub struct AxisMap {
    /// The input axis this output axis reads along.
    pub axis: Axis,
    /// Whether input coordinates fall as output ones rise.
    pub reversed: bool,
    pub offset: u32,
}

impl AxisMap {
    fn straight(axis: Axis, offset: u32) -> AxisMap {
        AxisMap { axis, reversed: false, offset }
    }

    fn reversed(axis: Axis, last: u32) -> AxisMap {
        AxisMap { axis, reversed: true, offset: last }
    }

    /// The input coordinate output coordinate `i` reads.
    pub fn input(&self, i: u32) -> u32 {
        if self.reversed { self.offset - i } else { self.offset + i }
    }
}

/// What an operation computes, with its weights worked out.
#[derive(Debug, Clone)]
pub enum Pass {
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

/// One operation over a `width × height` input.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pass: Pass,
    /// Size of the image the operation reads.
    pub input: (u32, u32),
}

impl Plan {
    /// `op` over a `width × height` input of at least one pixel. The caller
    /// has checked the output size against the limits.
    pub fn new(op: &ImageOp, width: u32, height: u32) -> Plan {
        let (last_x, last_y) = (width - 1, height - 1);
        let pass = match op {
            ImageOp::Grayscale => Pass::Pointwise(Pointwise::Grayscale),
            ImageOp::Invert => Pass::Pointwise(Pointwise::Invert),
            ImageOp::BrightnessContrast { brightness, contrast } => Pass::Pointwise(Pointwise::BrightnessContrast {
                brightness: *brightness,
                contrast_q8: kernels::amount_q8(*contrast),
            }),
            ImageOp::Threshold(level) => Pass::Pointwise(Pointwise::Threshold { level: *level }),
            ImageOp::GaussianBlur { sigma } => Pass::Gaussian(Kernel1d::gaussian(*sigma)),
            ImageOp::BoxBlur { radius } => Pass::BoxBlur { radius: *radius },
            ImageOp::Sharpen { sigma, amount } => {
                Pass::Sharpen { kernel: Kernel1d::gaussian(*sigma), amount_q8: kernels::amount_q8(*amount) }
            }
            ImageOp::Sobel => Pass::Sobel,
            ImageOp::Convolve(k) => Pass::Convolve { size: k.size, weights: kernels::conv_weights(&k.weights) },
            ImageOp::Resize { width: out_width, height: out_height, filter } => Pass::Resize {
                vertical: (*out_height != height).then(|| ResizePass::new(height, *out_height, *filter)),
                horizontal: (*out_width != width).then(|| ResizePass::new(width, *out_width, *filter)),
            },
            ImageOp::Crop { x, y, .. } => {
                Pass::Remap { x: AxisMap::straight(Axis::X, *x), y: AxisMap::straight(Axis::Y, *y) }
            }
            ImageOp::Flip(FlipAxis::Horizontal) => {
                Pass::Remap { x: AxisMap::reversed(Axis::X, last_x), y: AxisMap::straight(Axis::Y, 0) }
            }
            ImageOp::Flip(FlipAxis::Vertical) => {
                Pass::Remap { x: AxisMap::straight(Axis::X, 0), y: AxisMap::reversed(Axis::Y, last_y) }
            }
            // Clockwise: output (x, y) is input (y, h - 1 - x).
            ImageOp::Rotate(Rotation::Quarter) => {
                Pass::Remap { x: AxisMap::reversed(Axis::Y, last_y), y: AxisMap::straight(Axis::X, 0) }
            }
            ImageOp::Rotate(Rotation::Half) => {
                Pass::Remap { x: AxisMap::reversed(Axis::X, last_x), y: AxisMap::reversed(Axis::Y, last_y) }
            }
            // Output (x, y) is input (w - 1 - y, x).
            ImageOp::Rotate(Rotation::ThreeQuarters) => {
                Pass::Remap { x: AxisMap::straight(Axis::Y, 0), y: AxisMap::reversed(Axis::X, last_x) }
            }
        };
        Plan { pass, input: (width, height) }
    }

    /// Whether the output equals the input (a resize to the same size).
    pub fn is_identity(&self) -> bool {
        matches!(self.pass, Pass::Resize { vertical: None, horizontal: None })
    }

    /// How far past a pixel the operation reads, for those whose reads are
    /// a window around the pixel.
    fn halo(&self) -> Option<u32> {
        match &self.pass {
            Pass::Pointwise(_) => Some(0),
            Pass::Gaussian(kernel) | Pass::Sharpen { kernel, .. } => Some(kernel.radius),
            Pass::BoxBlur { radius } => Some(*radius),
            Pass::Sobel => Some(1),
            Pass::Convolve { size, .. } => Some(size / 2),
            Pass::Resize { .. } | Pass::Remap { .. } => None,
        }
    }

    /// The input axis that output axis `axis` reads along (the other one
    /// for a quarter turn).
    pub fn input_axis(&self, axis: Axis) -> Axis {
        match (&self.pass, axis) {
            (Pass::Remap { x, .. }, Axis::X) => x.axis,
            (Pass::Remap { y, .. }, Axis::Y) => y.axis,
            _ => axis,
        }
    }

    /// The interval of input pixels, along [`Plan::input_axis`] of `axis`,
    /// that the output pixels `outputs` of axis `axis` read. A kernel's halo
    /// is clamped to the image, as its edge rule clamps reads.
    pub fn reads(&self, axis: Axis, outputs: Range<u32>) -> Range<u32> {
        let input_len = match self.input_axis(axis) {
            Axis::X => self.input.0,
            Axis::Y => self.input.1,
        };
        if let Some(halo) = self.halo() {
            return outputs.start.saturating_sub(halo)..outputs.end.saturating_add(halo).min(input_len);
        }
        match &self.pass {
            Pass::Resize { vertical, horizontal } => {
                let pass = match axis {
                    Axis::X => horizontal,
                    Axis::Y => vertical,
                };
                let Some(pass) = pass else { return outputs };
                let taps = &pass.taps[outputs.start as usize..outputs.end as usize];
                // Every output reads at least the pixel its taps start at.
                let start = taps.iter().map(|t| t.start).min().unwrap_or(0).min(input_len.saturating_sub(1));
                let end = taps.iter().map(|t| t.start + t.weights.len().max(1) as u32).max().unwrap_or(start);
                start..end.min(input_len).max(start + 1)
            }
            Pass::Remap { x, y } => {
                let map = match axis {
                    Axis::X => x,
                    Axis::Y => y,
                };
                // The map is monotonic: its ends bound what the run reads.
                let (a, b) = (map.input(outputs.start), map.input(outputs.end - 1));
                a.min(b)..a.max(b) + 1
            }
            _ => outputs,
        }
    }

    /// The rectangle of input pixels the output rectangle `output` reads
    /// (the window of a wgpu band; GLES grows its tiles by [`Plan::reads`]).
    #[cfg(feature = "wgpu")]
    pub fn input_rect(&self, output: Rect) -> Rect {
        let (columns, rows) = output.ranges();
        let (along_x, along_y) = (self.reads(Axis::X, columns), self.reads(Axis::Y, rows));
        match self.input_axis(Axis::X) {
            Axis::X => Rect::spanning(&along_x, &along_y),
            Axis::Y => Rect::spanning(&along_y, &along_x),
        }
    }

    /// A remap as the integer affine map from output to input coordinates:
    /// input (x, y) = (m0·x + m1·y + m2, m3·x + m4·y + m5).
    pub fn affine(x: &AxisMap, y: &AxisMap) -> [i32; 6] {
        let mut map = [0i32; 6];
        for (column, axis_map) in [x, y].into_iter().enumerate() {
            let row = match axis_map.axis {
                Axis::X => 0,
                Axis::Y => 3,
            };
            map[row + column] = if axis_map.reversed { -1 } else { 1 };
            map[row + 2] = axis_map.offset as i32;
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wimpy_schema::job::ResizeFilter;

    fn plan(op: &str, width: u32, height: u32) -> Plan {
        match op.parse::<wimpy_schema::job::Op>().unwrap() {
            wimpy_schema::job::Op::Image(op) => Plan::new(&op, width, height),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_kernel_reads_its_halo_clamped_to_the_image() {
        let blur = plan("box-blur:3", 100, 50);
        assert_eq!(blur.reads(Axis::X, 10..20), 7..23);
        assert_eq!(blur.reads(Axis::X, 0..5), 0..8);
        assert_eq!(blur.reads(Axis::Y, 45..50), 42..50);
        assert_eq!(plan("invert", 9, 9).reads(Axis::Y, 2..3), 2..3);
    }

    #[test]
    fn a_quarter_turn_reads_the_other_axis() {
        // Output (x, y) is input (y, h - 1 - x): output columns read input rows.
        let turn = plan("rotate:90", 40, 30);
        assert_eq!(turn.input_axis(Axis::X), Axis::Y);
        assert_eq!(turn.reads(Axis::X, 0..10), 20..30);
        assert_eq!(turn.reads(Axis::Y, 5..7), 5..7);
        #[cfg(feature = "wgpu")]
        assert_eq!(turn.input_rect(Rect::spanning(&(0..10), &(5..7))), Rect::spanning(&(5..7), &(20..30)));
        assert_eq!(Plan::affine(&AxisMap::reversed(Axis::Y, 29), &AxisMap::straight(Axis::X, 0)), [0, 1, 0, -1, 0, 29]);
    }

    #[test]
    fn a_resize_reads_the_taps_of_its_outputs() {
        let p = plan("resize:50:25:bilinear", 100, 50);
        let Pass::Resize { horizontal: Some(h), .. } = &p.pass else { panic!() };
        let wanted = h.taps[10].start..h.taps[19].start + h.taps[19].weights.len() as u32;
        assert_eq!(p.reads(Axis::X, 10..20), wanted);
        assert_eq!(p.reads(Axis::X, 0..50), 0..100);
        let same_width =
            Plan::new(&ImageOp::Resize { width: 100, height: 10, filter: ResizeFilter::Lanczos3 }, 100, 50);
        assert_eq!(same_width.reads(Axis::X, 3..9), 3..9, "a side that keeps its size reads itself");
    }
}
