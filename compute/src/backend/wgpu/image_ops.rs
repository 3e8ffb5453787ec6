//! Image operations as kernel passes, on a whole image or on one row tile.
//!
//! A [`Prepared`] operation is the [`Plan`] the GPU backends share (the
//! passes, their weights, and for any band of output rows the window of
//! input pixels it reads) with what this backend lays out once. Running on
//! a whole image is the case where the band is every output row and the
//! window the whole input.

use std::borrow::Cow;
use std::ops::Range;
use std::time::Instant;

use wimpy_schema::job::ImageOp;

use super::context::{Gpu, Kernel, device_error};
use crate::kernels::{Kernel1d, ResizePass};
use crate::plan::{Pass, Plan, Pointwise, Rect};
use crate::{ComputeError, Deadline, Image, StageTimes};

/// Modes of `pixel.wgsl`.
const PIXEL_GRAYSCALE: i32 = 0;
const PIXEL_INVERT: i32 = 1;
const PIXEL_BRIGHTNESS_CONTRAST: i32 = 2;
const PIXEL_THRESHOLD: i32 = 3;

/// An image held by the device.
#[derive(Debug)]
pub(super) struct DeviceImage {
    pub(super) buffer: ::wgpu::Buffer,
    pub(super) width: u32,
    pub(super) height: u32,
}

/// One separable blur as `blur.wgsl` takes it: Gaussian (Q14 weights) or
/// box (unit weights, then the mean).
#[derive(Debug)]
struct Separable {
    radius: u32,
    weights: Vec<i32>,
    box_mean: bool,
}

impl Separable {
    fn gaussian(kernel: &Kernel1d) -> Separable {
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

/// One operation prepared for one input size: the plan both GPU backends
/// share (what it computes, what each band of output rows reads), and what
/// this backend lays out once for it.
#[derive(Debug)]
pub(super) struct Prepared {
    plan: Plan,
    /// The horizontal resize taps as `resize.wgsl` reads them: the same for
    /// every band, so laid out once.
    horizontal_taps: Option<Vec<i32>>,
    /// Size of the image it makes (checked against the limits by the caller).
    output: (u32, u32),
}

impl Prepared {
    pub(super) fn new(op: &ImageOp, input: (u32, u32), output: (u32, u32)) -> Prepared {
        let plan = Plan::new(op, input.0, input.1);
        let horizontal_taps = match &plan.pass {
            Pass::Resize { horizontal: Some(pass), .. } => Some(tap_words(pass, 0..output.0)),
            _ => None,
        };
        Prepared { plan, horizontal_taps, output }
    }

    /// Whether the output equals the input (nothing to dispatch).
    pub(super) fn is_identity(&self) -> bool {
        self.plan.is_identity()
    }

    fn input(&self) -> (u32, u32) {
        self.plan.input
    }

    /// The input pixels the output rows of `band` read.
    fn window(&self, band: Rect) -> Rect {
        self.plan.input_rect(band)
    }

    /// The largest buffer the passes for `band` bind, reading `window`.
    fn largest_buffer(&self, window: Rect, band: Rect) -> u64 {
        let words = |n: usize| n as u64 * 4;
        // Every step binds its source and its destination; the intermediate
        // passes of blurs and sharpening are the size of one or the other.
        let mut largest = window.bytes().max(band.bytes());
        match &self.plan.pass {
            Pass::Gaussian(kernel) | Pass::Sharpen { kernel, .. } => largest = largest.max(words(kernel.weights.len())),
            Pass::BoxBlur { radius } => largest = largest.max(words(2 * *radius as usize + 1)),
            Pass::Convolve { weights, .. } => largest = largest.max(words(weights.len())),
            Pass::Resize { vertical, .. } => {
                if let Some(pass) = vertical {
                    let taps = &pass.taps[band.y as usize..(band.y + band.height) as usize];
                    largest = largest.max(words(3 * taps.len() + taps.iter().map(|t| t.weights.len()).sum::<usize>()));
                    largest = largest.max(Rect::rows(self.input().0, band.y, band.height).bytes());
                }
                if let Some(taps) = &self.horizontal_taps {
                    largest = largest.max(words(taps.len()));
                }
            }
            Pass::Pointwise(_) | Pass::Sobel | Pass::Remap { .. } => {}
        }
        largest
    }

    /// Whether the whole operation runs in one go within `max_bytes` per buffer.
    pub(super) fn fits_whole(&self, max_bytes: u64) -> bool {
        let band = Rect::rows(self.output.0, 0, self.output.1);
        self.largest_buffer(Rect::whole(self.input().0, self.input().1), band) <= max_bytes
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
        let params = |src: Rect, dst: Rect, args: [i32; 7]| pass_params(src, dst, self.input(), args);
        let groups = gpu.image_groups(band.width, band.height);
        match &self.plan.pass {
            Pass::Pointwise(op) => {
                let out = gpu.storage("pixel", band.bytes());
                let (mode, arg1, arg2) = match *op {
                    Pointwise::Grayscale => (PIXEL_GRAYSCALE, 0, 0),
                    Pointwise::Invert => (PIXEL_INVERT, 0, 0),
                    Pointwise::BrightnessContrast { brightness, contrast_q8 } => {
                        (PIXEL_BRIGHTNESS_CONTRAST, brightness, contrast_q8)
                    }
                    Pointwise::Threshold { level } => (PIXEL_THRESHOLD, i32::from(level), 0),
                };
                let args = [mode, arg1, arg2, 0, 0, 0, 0];
                gpu.dispatch(encoder, Kernel::Pixel, &params(window, band, args), &[(1, src), (2, &out)], groups);
                out
            }
            Pass::Gaussian(kernel) => self.encode_blur(gpu, encoder, &Separable::gaussian(kernel), src, window, band),
            Pass::BoxBlur { radius } => {
                self.encode_blur(gpu, encoder, &Separable::box_blur(*radius), src, window, band)
            }
            Pass::Sharpen { kernel, amount_q8 } => {
                let blurred = self.encode_blur(gpu, encoder, &Separable::gaussian(kernel), src, window, band);
                let out = gpu.storage("sharpen", band.bytes());
                let args = [*amount_q8, 0, 0, 0, 0, 0, 0];
                let buffers = [(1, src), (2, &out), (3, &blurred)];
                gpu.dispatch(encoder, Kernel::Unsharp, &params(window, band, args), &buffers, groups);
                out
            }
            Pass::Sobel => {
                let out = gpu.storage("sobel", band.bytes());
                gpu.dispatch(encoder, Kernel::Sobel, &params(window, band, [0; 7]), &[(1, src), (2, &out)], groups);
                out
            }
            Pass::Convolve { size, weights } => {
                let weights = gpu.storage_with("convolution weights", bytemuck::cast_slice(weights));
                let out = gpu.storage("convolve", band.bytes());
                let args = [*size as i32, 0, 0, 0, 0, 0, 0];
                let buffers = [(1, src), (2, &out), (3, &weights)];
                gpu.dispatch(encoder, Kernel::Convolve, &params(window, band, args), &buffers, groups);
                out
            }
            Pass::Resize { vertical, horizontal } => {
                let mut current = (src.clone(), window);
                if let Some(pass) = vertical {
                    // The input's width, the band's rows.
                    let rows = Rect::rows(self.input().0, band.y, band.height);
                    let taps = tap_words(pass, band.y..band.y + band.height);
                    let taps = gpu.storage_with("vertical resize taps", bytemuck::cast_slice(&taps));
                    let out = gpu.storage("vertical resize", rows.bytes());
                    let args = [pass.precision as i32, 1, 0, 0, 0, 0, 0];
                    let buffers = [(1, &current.0), (2, &out), (3, &taps)];
                    let groups = gpu.image_groups(rows.width, rows.height);
                    gpu.dispatch(encoder, Kernel::Resize, &params(current.1, rows, args), &buffers, groups);
                    current = (out, rows);
                }
                if let (Some(pass), Some(taps)) = (horizontal, &self.horizontal_taps) {
                    let taps = gpu.storage_with("horizontal resize taps", bytemuck::cast_slice(taps));
                    let out = gpu.storage("horizontal resize", band.bytes());
                    let args = [pass.precision as i32, 0, 0, 0, 0, 0, 0];
                    let buffers = [(1, &current.0), (2, &out), (3, &taps)];
                    gpu.dispatch(encoder, Kernel::Resize, &params(current.1, band, args), &buffers, groups);
                    current = (out, band);
                }
                current.0
            }
            Pass::Remap { x, y } => {
                let m = Plan::affine(x, y);
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
            &pass_params(window, window, self.input(), args(false)),
            &[(1, src), (2, &horizontal), (3, &weights)],
            gpu.image_groups(window.width, window.height),
        );
        let out = gpu.storage("vertical blur", band.bytes());
        gpu.dispatch(
            encoder,
            Kernel::Blur,
            &pass_params(window, band, self.input(), args(true)),
            &[(1, &horizontal), (2, &out), (3, &weights)],
            gpu.image_groups(band.width, band.height),
        );
        out
    }
}

/// The uniform block of every image kernel (`Pass` in image_common.wgsl), as bytes.
fn pass_params(src: Rect, dst: Rect, image: (u32, u32), args: [i32; 7]) -> Vec<u8> {
    let header = [
        src.width as i32,
        src.height as i32,
        src.x as i32,
        src.y as i32,
        dst.width as i32,
        dst.height as i32,
        dst.y as i32,
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
    let rows = window.y as usize..(window.y + window.height) as usize;
    if window.x == 0 && window.width == image.width() {
        return Cow::Borrowed(&image.pixels()[rows.start * stride..rows.end * stride]);
    }
    let columns = window.x as usize * 4..(window.x + window.width) as usize * 4;
    let mut pixels = Vec::with_capacity(window.bytes() as usize);
    for y in rows {
        pixels.extend_from_slice(&image.row(y)[columns.clone()]);
    }
    Cow::Owned(pixels)
}
