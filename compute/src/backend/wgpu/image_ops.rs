//! Image operations as kernel passes, on a whole image or on one row tile.
//!
//! A [`Plan`] is one operation prepared for one input size: the passes it
//! dispatches, the weights they read, and, for any band of output rows, the
//! window of input pixels that band needs. Running on a whole image is the
//! case where the band is every output row and the window the whole input.

use std::borrow::Cow;
use std::ops::Range;
use std::time::Instant;

use wimpy_schema::job::{FlipAxis, ImageOp, Rotation};

use super::context::{Gpu, Kernel, device_error};
use crate::kernels::{self, Kernel1d, ResizePass};
use crate::{ComputeError, Deadline, Image, StageTimes};

/// Modes of `pixel.wgsl`.
const PIXEL_GRAYSCALE: i32 = 0;
const PIXEL_INVERT: i32 = 1;
const PIXEL_BRIGHTNESS_CONTRAST: i32 = 2;
const PIXEL_THRESHOLD: i32 = 3;

/// A rectangle of an image, in the whole image's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rect {
    pub(super) x0: u32,
    pub(super) y0: u32,
    pub(super) width: u32,
    pub(super) rows: u32,
}

impl Rect {
    /// Full rows `y0..y0 + rows` of an image `width` wide.
    pub(super) fn rows(width: u32, y0: u32, rows: u32) -> Rect {
        Rect { x0: 0, y0, width, rows }
    }

    /// Bytes of RGBA8 pixels.
    pub(super) fn bytes(self) -> u64 {
        u64::from(self.width) * u64::from(self.rows) * 4
    }
}

/// An image held by the device.
#[derive(Debug)]
pub(super) struct DeviceImage {
    pub(super) buffer: ::wgpu::Buffer,
    pub(super) width: u32,
    pub(super) height: u32,
}

/// One separable blur: Gaussian (Q14 weights) or box (unit weights, mean).
#[derive(Debug)]
struct Separable {
    radius: u32,
    weights: Vec<i32>,
    box_mean: bool,
}

impl Separable {
    fn gaussian(sigma: f32) -> Separable {
        let kernel = Kernel1d::gaussian(sigma);
        Separable {
            radius: kernel.radius,
            weights: kernel.weights.iter().map(|&w| i32::from(w)).collect(),
            box_mean: false,
        }
    }

    fn box_blur(radius: u32) -> Separable {
        Separable { radius, weights: vec![1; 2 * radius as usize + 1], box_mean: true }
    }
}

/// The passes of one operation.
#[derive(Debug)]
enum Step {
    /// `pixel.wgsl` in one of its modes.
    Pixel {
        mode: i32,
        arg1: i32,
        arg2: i32,
    },
    Blur(Separable),
    Sharpen {
        blur: Separable,
        amount_q8: i32,
    },
    Sobel,
    Convolve {
        size: u32,
        weights: Vec<i32>,
    },
    /// Either pass is left out when its side does not change, as in the
    /// reference. The horizontal taps are the same for every band, so they
    /// are laid out once.
    Resize {
        vertical: Option<ResizePass>,
        horizontal: Option<(ResizePass, Vec<i32>)>,
    },
    /// Destination (x, y) copies source `(m0·x + m1·y + m2, m3·x + m4·y + m5)`.
    Remap([i32; 6]),
}

/// One operation prepared for one input size.
#[derive(Debug)]
pub(super) struct Plan {
    step: Step,
    /// Size of the image the operation reads.
    input: (u32, u32),
    /// Size of the image it makes (checked against the limits by the caller).
    output: (u32, u32),
}

impl Plan {
    pub(super) fn new(op: &ImageOp, input: (u32, u32), output: (u32, u32)) -> Plan {
        let (w, h) = (input.0 as i32, input.1 as i32);
        let pixel = |mode, arg1, arg2| Step::Pixel { mode, arg1, arg2 };
        let step = match op {
            ImageOp::Grayscale => pixel(PIXEL_GRAYSCALE, 0, 0),
            ImageOp::Invert => pixel(PIXEL_INVERT, 0, 0),
            ImageOp::BrightnessContrast { brightness, contrast } => {
                pixel(PIXEL_BRIGHTNESS_CONTRAST, *brightness, kernels::amount_q8(*contrast))
            }
            ImageOp::Threshold(level) => pixel(PIXEL_THRESHOLD, i32::from(*level), 0),
            ImageOp::GaussianBlur { sigma } => Step::Blur(Separable::gaussian(*sigma)),
            ImageOp::BoxBlur { radius } => Step::Blur(Separable::box_blur(*radius)),
            ImageOp::Sharpen { sigma, amount } => {
                Step::Sharpen { blur: Separable::gaussian(*sigma), amount_q8: kernels::amount_q8(*amount) }
            }
            ImageOp::Sobel => Step::Sobel,
            ImageOp::Convolve(k) => Step::Convolve { size: k.size, weights: kernels::conv_weights(&k.weights) },
            // Neither side changes: the reference skips both passes.
            ImageOp::Resize { .. } if output == input => Step::Remap([1, 0, 0, 0, 1, 0]),
            ImageOp::Resize { filter, .. } => {
                let vertical = (output.1 != input.1).then(|| ResizePass::new(input.1, output.1, *filter));
                let horizontal = (output.0 != input.0).then(|| {
                    let pass = ResizePass::new(input.0, output.0, *filter);
                    let words = tap_words(&pass, 0..output.0);
                    (pass, words)
                });
                Step::Resize { vertical, horizontal }
            }
            ImageOp::Crop { x, y, .. } => Step::Remap([1, 0, *x as i32, 0, 1, *y as i32]),
            ImageOp::Flip(FlipAxis::Horizontal) => Step::Remap([-1, 0, w - 1, 0, 1, 0]),
            ImageOp::Flip(FlipAxis::Vertical) => Step::Remap([1, 0, 0, 0, -1, h - 1]),
            ImageOp::Rotate(Rotation::Half) => Step::Remap([-1, 0, w - 1, 0, -1, h - 1]),
            // Clockwise: output (x, y) is input (y, h − 1 − x).
            ImageOp::Rotate(Rotation::Quarter) => Step::Remap([0, 1, 0, -1, 0, h - 1]),
            // Counter-clockwise: output (x, y) is input (w − 1 − y, x).
            ImageOp::Rotate(Rotation::ThreeQuarters) => Step::Remap([0, -1, w - 1, 1, 0, 0]),
        };
        Plan { step, input, output }
    }

    /// The input pixels the output rows of `band` read: the band's own rows
    /// widened by the kernel's reach (clamped to the image), the rows the
    /// band's resize taps cover, or the rectangle a remap reads from.
    fn window(&self, band: Rect) -> Rect {
        let (width, height) = self.input;
        let rows_around = |reach: u32| {
            let y0 = band.y0.saturating_sub(reach);
            let end = (band.y0 + band.rows).saturating_add(reach).min(height);
            Rect::rows(width, y0, end - y0)
        };
        match &self.step {
            Step::Pixel { .. } | Step::Resize { vertical: None, .. } => rows_around(0),
            Step::Blur(blur) | Step::Sharpen { blur, .. } => rows_around(blur.radius),
            Step::Sobel => rows_around(1),
            Step::Convolve { size, .. } => rows_around(size / 2),
            Step::Resize { vertical: Some(pass), .. } => {
                let taps = &pass.taps[band.y0 as usize..(band.y0 + band.rows) as usize];
                let first = taps.iter().map(|t| t.start).min().unwrap_or(0);
                let end = taps.iter().map(|t| t.start + t.weights.len() as u32).max().unwrap_or(first);
                Rect::rows(width, first, end.max(first) - first)
            }
            Step::Remap(m) => {
                // The map is affine, so the corners bound what the band reads.
                let (right, bottom) = (band.width as i32 - 1, (band.y0 + band.rows) as i32 - 1);
                let corners = [(0, band.y0 as i32), (right, band.y0 as i32), (0, bottom), (right, bottom)];
                let sources = corners.map(|(x, y)| (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]));
                let x0 = sources.iter().map(|s| s.0).min().unwrap_or(0);
                let x1 = sources.iter().map(|s| s.0).max().unwrap_or(0);
                let y0 = sources.iter().map(|s| s.1).min().unwrap_or(0);
                let y1 = sources.iter().map(|s| s.1).max().unwrap_or(0);
                Rect { x0: x0 as u32, y0: y0 as u32, width: (x1 - x0 + 1) as u32, rows: (y1 - y0 + 1) as u32 }
            }
        }
    }

    /// The largest buffer the passes for `band` bind, reading `window`.
    fn largest_buffer(&self, window: Rect, band: Rect) -> u64 {
        let words = |n: usize| n as u64 * 4;
        // Every step binds its source and its destination; the intermediate
        // passes of blurs and sharpening are the size of one or the other.
        let mut largest = window.bytes().max(band.bytes());
        match &self.step {
            Step::Blur(blur) | Step::Sharpen { blur, .. } => largest = largest.max(words(blur.weights.len())),
            Step::Convolve { weights, .. } => largest = largest.max(words(weights.len())),
            Step::Resize { vertical, horizontal } => {
                if let Some(pass) = vertical {
                    let taps = &pass.taps[band.y0 as usize..(band.y0 + band.rows) as usize];
                    largest = largest.max(words(3 * taps.len() + taps.iter().map(|t| t.weights.len()).sum::<usize>()));
                    largest = largest.max(Rect::rows(self.input.0, band.y0, band.rows).bytes());
                }
                if let Some((_, tap_words)) = horizontal {
                    largest = largest.max(words(tap_words.len()));
                }
            }
            Step::Pixel { .. } | Step::Sobel | Step::Remap(_) => {}
        }
        largest
    }

    /// Whether the whole operation runs in one go within `max_bytes` per buffer.
    pub(super) fn fits_whole(&self, max_bytes: u64) -> bool {
        let band = Rect::rows(self.output.0, 0, self.output.1);
        self.largest_buffer(Rect::rows(self.input.0, 0, self.input.1), band) <= max_bytes
    }

    /// The most output rows from `y0` on that one tile can make within
    /// `max_bytes` per buffer, or `None` if not even one row fits.
    fn band_rows(&self, y0: u32, max_bytes: u64) -> Option<u32> {
        let fits = |rows| {
            let band = Rect::rows(self.output.0, y0, rows);
            self.largest_buffer(self.window(band), band) <= max_bytes
        };
        if !fits(1) {
            return None;
        }
        // Buffers grow with the band, so the largest band that fits is a
        // binary search away.
        let (mut lo, mut hi) = (1, self.output.1 - y0);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) { lo = mid } else { hi = mid - 1 }
        }
        Some(lo)
    }

    /// Runs the operation on an image the device holds whole.
    pub(super) fn run_on_device(&self, gpu: &Gpu, src: &DeviceImage) -> Result<DeviceImage, ComputeError> {
        let window = Rect::rows(src.width, 0, src.height);
        let band = Rect::rows(self.output.0, 0, self.output.1);
        gpu.checked("running an image operation", || {
            let mut encoder = gpu.encoder();
            let buffer = self.encode(gpu, &mut encoder, &src.buffer, window, band);
            gpu.submit_and_wait(encoder)?;
            Ok(DeviceImage { buffer, width: self.output.0, height: self.output.1 })
        })
    }

    /// Runs the operation on a host image too large for the device's
    /// buffers: band by band of output rows, each tile uploading just the
    /// window of input its band reads.
    pub(super) fn run_tiled(
        &self,
        gpu: &Gpu,
        image: &Image,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<Image, ComputeError> {
        let (out_width, out_height) = self.output;
        let row_bytes = out_width as usize * 4;
        let mut pixels = vec![0u8; row_bytes * out_height as usize];
        let mut y0 = 0;
        while y0 < out_height {
            deadline.check()?;
            let rows = self.band_rows(y0, gpu.max_buffer_bytes()).ok_or_else(|| {
                let band = Rect::rows(out_width, y0, 1);
                device_error(format!(
                    "one output row of {out_width}x{out_height} needs a {}-byte buffer, more than this device's \
                     {}-byte limit",
                    self.largest_buffer(self.window(band), band),
                    gpu.max_buffer_bytes()
                ))
            })?;
            let band = Rect::rows(out_width, y0, rows);
            let window = self.window(band);

            let start = Instant::now();
            let src = gpu.checked("uploading a tile", || {
                let buffer = gpu.storage_with("tile", &window_pixels(image, window));
                gpu.flush_uploads()?;
                Ok(buffer)
            })?;
            times.upload += start.elapsed();

            let start = Instant::now();
            let result = gpu.checked("running an image operation on a tile", || {
                let mut encoder = gpu.encoder();
                let buffer = self.encode(gpu, &mut encoder, &src, window, band);
                gpu.submit_and_wait(encoder)?;
                Ok(buffer)
            })?;
            times.kernel += start.elapsed();

            let start = Instant::now();
            let band_pixels = gpu.checked("reading a tile back", || gpu.read(&result, band.bytes()))?;
            let offset = y0 as usize * row_bytes;
            pixels[offset..offset + band_pixels.len()].copy_from_slice(&band_pixels);
            times.download += start.elapsed();
            y0 += rows;
        }
        Ok(Image::new(out_width, out_height, pixels))
    }

    /// Records the passes that make the output rows of `band` from `src`,
    /// which holds the input pixels of `window`; returns the band's buffer.
    fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut ::wgpu::CommandEncoder,
        src: &::wgpu::Buffer,
        window: Rect,
        band: Rect,
    ) -> ::wgpu::Buffer {
        let params = |src: Rect, dst: Rect, args: [i32; 7]| pass_params(src, dst, self.input, args);
        let groups = gpu.image_groups(band.width, band.rows);
        match &self.step {
            Step::Pixel { mode, arg1, arg2 } => {
                let out = gpu.storage("pixel", band.bytes());
                let args = [*mode, *arg1, *arg2, 0, 0, 0, 0];
                gpu.dispatch(encoder, Kernel::Pixel, &params(window, band, args), &[(1, src), (2, &out)], groups);
                out
            }
            Step::Blur(blur) => self.encode_blur(gpu, encoder, blur, src, window, band),
            Step::Sharpen { blur, amount_q8 } => {
                let blurred = self.encode_blur(gpu, encoder, blur, src, window, band);
                let out = gpu.storage("sharpen", band.bytes());
                let args = [*amount_q8, 0, 0, 0, 0, 0, 0];
                let buffers = [(1, src), (2, &out), (3, &blurred)];
                gpu.dispatch(encoder, Kernel::Unsharp, &params(window, band, args), &buffers, groups);
                out
            }
            Step::Sobel => {
                let out = gpu.storage("sobel", band.bytes());
                gpu.dispatch(encoder, Kernel::Sobel, &params(window, band, [0; 7]), &[(1, src), (2, &out)], groups);
                out
            }
            Step::Convolve { size, weights } => {
                let weights = gpu.storage_with("convolution weights", bytemuck::cast_slice(weights));
                let out = gpu.storage("convolve", band.bytes());
                let args = [*size as i32, 0, 0, 0, 0, 0, 0];
                let buffers = [(1, src), (2, &out), (3, &weights)];
                gpu.dispatch(encoder, Kernel::Convolve, &params(window, band, args), &buffers, groups);
                out
            }
            Step::Resize { vertical, horizontal } => {
                let mut current = (src.clone(), window);
                if let Some(pass) = vertical {
                    // The input's width, the band's rows.
                    let rows = Rect::rows(self.input.0, band.y0, band.rows);
                    let taps = tap_words(pass, band.y0..band.y0 + band.rows);
                    let taps = gpu.storage_with("vertical resize taps", bytemuck::cast_slice(&taps));
                    let out = gpu.storage("vertical resize", rows.bytes());
                    let args = [pass.precision as i32, 1, 0, 0, 0, 0, 0];
                    let buffers = [(1, &current.0), (2, &out), (3, &taps)];
                    let groups = gpu.image_groups(rows.width, rows.rows);
                    gpu.dispatch(encoder, Kernel::Resize, &params(current.1, rows, args), &buffers, groups);
                    current = (out, rows);
                }
                if let Some((pass, taps)) = horizontal {
                    let taps = gpu.storage_with("horizontal resize taps", bytemuck::cast_slice(taps));
                    let out = gpu.storage("horizontal resize", band.bytes());
                    let args = [pass.precision as i32, 0, 0, 0, 0, 0, 0];
                    let buffers = [(1, &current.0), (2, &out), (3, &taps)];
                    gpu.dispatch(encoder, Kernel::Resize, &params(current.1, band, args), &buffers, groups);
                    current = (out, band);
                }
                current.0
            }
            Step::Remap(m) => {
                let out = gpu.storage("remap", band.bytes());
                let args = [m[0], m[1], m[2], m[3], m[4], m[5], 0];
                gpu.dispatch(encoder, Kernel::Remap, &params(window, band, args), &[(1, src), (2, &out)], groups);
                out
            }
        }
    }

    /// A horizontal pass over every row of the window (the vertical pass
    /// reads above and below the band), then a vertical pass into the band.
    fn encode_blur(
        &self,
        gpu: &Gpu,
        encoder: &mut ::wgpu::CommandEncoder,
        blur: &Separable,
        src: &::wgpu::Buffer,
        window: Rect,
        band: Rect,
    ) -> ::wgpu::Buffer {
        let weights = gpu.storage_with("blur weights", bytemuck::cast_slice(&blur.weights));
        let args = |vertical: bool| [blur.radius as i32, i32::from(vertical), i32::from(blur.box_mean), 0, 0, 0, 0];
        let horizontal = gpu.storage("horizontal blur", window.bytes());
        gpu.dispatch(
            encoder,
            Kernel::Blur,
            &pass_params(window, window, self.input, args(false)),
            &[(1, src), (2, &horizontal), (3, &weights)],
            gpu.image_groups(window.width, window.rows),
        );
        let out = gpu.storage("vertical blur", band.bytes());
        gpu.dispatch(
            encoder,
            Kernel::Blur,
            &pass_params(window, band, self.input, args(true)),
            &[(1, &horizontal), (2, &out), (3, &weights)],
            gpu.image_groups(band.width, band.rows),
        );
        out
    }
}

/// The uniform block of every image kernel (`Pass` in image_common.wgsl), as bytes.
fn pass_params(src: Rect, dst: Rect, image: (u32, u32), args: [i32; 7]) -> Vec<u8> {
    let header = [
        src.width as i32,
        src.rows as i32,
        src.x0 as i32,
        src.y0 as i32,
        dst.width as i32,
        dst.rows as i32,
        dst.y0 as i32,
        image.0 as i32,
        image.1 as i32,
    ];
    let words: Vec<i32> = header.into_iter().chain(args).collect();
    bytemuck::cast_slice(&words).to_vec()
}

/// The taps of `outputs` laid out for `resize.wgsl`: three words per output
/// (first input pixel, tap count, index of its first weight), then the weights.
fn tap_words(pass: &ResizePass, outputs: Range<u32>) -> Vec<i32> {
    let taps = &pass.taps[outputs.start as usize..outputs.end as usize];
    let weights: usize = taps.iter().map(|t| t.weights.len()).sum();
    let mut words = Vec::with_capacity(3 * taps.len() + weights);
    let mut next_weight = 3 * taps.len();
    for t in taps {
        words.extend([t.start as i32, t.weights.len() as i32, next_weight as i32]);
        next_weight += t.weights.len();
    }
    for t in taps {
        words.extend(t.weights.iter().map(|&w| i32::from(w)));
    }
    words
}

/// The pixels of `window`: a slice of the image when it spans whole rows,
/// else a copy row by row.
fn window_pixels(image: &Image, window: Rect) -> Cow<'_, [u8]> {
    let stride = image.stride();
    let rows = window.y0 as usize..(window.y0 + window.rows) as usize;
    if window.x0 == 0 && window.width == image.width() {
        return Cow::Borrowed(&image.pixels()[rows.start * stride..rows.end * stride]);
    }
    let columns = window.x0 as usize * 4..(window.x0 + window.width) as usize * 4;
    let mut pixels = Vec::with_capacity(window.bytes() as usize);
    for y in rows {
        pixels.extend_from_slice(&image.row(y)[columns.clone()]);
    }
    Cow::Owned(pixels)
}
