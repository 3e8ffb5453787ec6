//! The scalar backend: every operation written as plainly as its definition
//! in [`kernels`](crate::kernels). Other backends are tested against
//! this one.

mod blake3;
mod sha256;

use wimpy_schema::job::{HashAlgo, HashOp, ImageOp};

use super::{Backend, BackendInfo, BackendKind, hash_rounds_on_host, run_on_host};
use crate::kernels::{self, Kernel1d, ResizePass};
use crate::{ComputeError, Deadline, Image, Limits, StageTimes, geometry};

pub use self::blake3::blake3;
pub use self::sha256::sha256;

/// The scalar backend.
#[derive(Debug)]
pub struct CpuBackend {
    info: BackendInfo,
}

impl Default for CpuBackend {
    fn default() -> CpuBackend {
        CpuBackend { info: BackendInfo { kind: BackendKind::Cpu, device: "scalar Rust".into(), software: false } }
    }
}

impl Backend for CpuBackend {
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
        run_on_host(image, ops, limits, deadline, times, |op, image| Ok(apply(op, image)))
    }

    fn hash(
        &mut self,
        data: &[u8],
        op: HashOp,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<[u8; 32], ComputeError> {
        let f = match op.algo {
            HashAlgo::Blake3 => blake3,
            HashAlgo::Sha256 => sha256,
        };
        hash_rounds_on_host(data, op.rounds, deadline, times, f)
    }
}

/// One operation, by its definition. The caller has checked the output size.
pub fn apply(op: &ImageOp, image: Image) -> Image {
    match op {
        ImageOp::Grayscale => map_pixels(image, |p| {
            let y = kernels::luma(p[0], p[1], p[2]);
            [y, y, y, p[3]]
        }),
        ImageOp::Invert => map_pixels(image, |p| [255 - p[0], 255 - p[1], 255 - p[2], p[3]]),
        ImageOp::BrightnessContrast { brightness, contrast } => {
            let c = kernels::amount_q8(*contrast);
            let f = |v| kernels::brightness_contrast(v, *brightness, c);
            map_pixels(image, |p| [f(p[0]), f(p[1]), f(p[2]), p[3]])
        }
        ImageOp::Threshold(level) => map_pixels(image, |p| {
            let v = if kernels::luma(p[0], p[1], p[2]) >= *level { 255 } else { 0 };
            [v, v, v, p[3]]
        }),
        ImageOp::GaussianBlur { sigma } => gaussian(&image, &Kernel1d::gaussian(*sigma)),
        ImageOp::BoxBlur { radius } => box_blur(&image, *radius),
        ImageOp::Sharpen { sigma, amount } => {
            let blurred = gaussian(&image, &Kernel1d::gaussian(*sigma));
            let a = kernels::amount_q8(*amount);
            let mut out = image;
            for (p, b) in out.pixels_mut().chunks_exact_mut(4).zip(blurred.pixels().chunks_exact(4)) {
                for c in 0..3 {
                    p[c] = kernels::unsharp(p[c], b[c], a);
                }
            }
            out
        }
        ImageOp::Sobel => sobel(&image),
        ImageOp::Convolve(k) => convolve(&image, k.size, &kernels::conv_weights(&k.weights)),
        ImageOp::Resize { width, height, filter } => {
            let mut img = image;
            if *height != img.height() {
                img = resize_vertical(&img, &ResizePass::new(img.height(), *height, *filter));
            }
            if *width != img.width() {
                img = resize_horizontal(&img, &ResizePass::new(img.width(), *width, *filter));
            }
            img
        }
        ImageOp::Crop { x, y, width, height } => geometry::crop(&image, *x, *y, *width, *height),
        ImageOp::Flip(axis) => geometry::flip(&image, *axis),
        ImageOp::Rotate(r) => geometry::rotate(&image, *r),
    }
}

fn map_pixels(mut image: Image, f: impl Fn([u8; 4]) -> [u8; 4]) -> Image {
    for p in image.pixels_mut().chunks_exact_mut(4) {
        let out = f([p[0], p[1], p[2], p[3]]);
        p.copy_from_slice(&out);
    }
    image
}

/// Index `i` clamped into `0..n`: out-of-image taps read the edge.
fn edge(i: i64, n: u32) -> usize {
    i.clamp(0, i64::from(n) - 1) as usize
}

fn px(image: &Image, x: usize, y: usize, c: usize) -> u8 {
    image.pixels()[(y * image.width() as usize + x) * 4 + c]
}

/// A `w` x `h` image whose channel `c` at (x, y) is `f(x, y, c)`.
fn from_fn(w: u32, h: u32, f: impl Fn(usize, usize, usize) -> u8) -> Image {
    let mut out = Image::zeroed(w, h);
    let mut values = out.pixels_mut().iter_mut();
    for y in 0..h as usize {
        for x in 0..w as usize {
            for c in 0..4 {
                *values.next().expect("w * h * 4 values") = f(x, y, c);
            }
        }
    }
    out
}

/// Channel `c` of the pixel `d` steps from (x, y) along a pass's axis; past
/// the border the edge repeats.
fn along(src: &Image, x: usize, y: usize, c: usize, d: i64, horizontal: bool) -> u8 {
    if horizontal {
        px(src, edge(x as i64 + d, src.width()), y, c)
    } else {
        px(src, x, edge(y as i64 + d, src.height()), c)
    }
}

/// A horizontal then a vertical pass of `k`, all four channels.
pub fn gaussian(image: &Image, k: &Kernel1d) -> Image {
    let r = i64::from(k.radius);
    let pass = |src: &Image, horizontal: bool| {
        from_fn(src.width(), src.height(), |x, y, c| {
            let sum: i32 = (k.weights.iter().enumerate())
                .map(|(t, &wt)| i32::from(wt) * i32::from(along(src, x, y, c, t as i64 - r, horizontal)))
                .sum();
            kernels::round_shift(sum, kernels::BLUR_SHIFT)
        })
    };
    pass(&pass(image, true), false)
}

fn box_blur(image: &Image, radius: u32) -> Image {
    let r = i64::from(radius);
    let pass = |src: &Image, horizontal: bool| {
        from_fn(src.width(), src.height(), |x, y, c| {
            let sum: u32 = (-r..=r).map(|d| u32::from(along(src, x, y, c, d, horizontal))).sum();
            kernels::box_mean(sum, radius)
        })
    };
    pass(&pass(image, true), false)
}

fn sobel(image: &Image) -> Image {
    let (w, h) = (image.width(), image.height());
    let luma: Vec<i32> = image.pixels().chunks_exact(4).map(|p| i32::from(kernels::luma(p[0], p[1], p[2]))).collect();
    let l = |x: i64, y: i64| luma[edge(y, h) * w as usize + edge(x, w)];
    let mut out = image.clone();
    for y in 0..i64::from(h) {
        for x in 0..i64::from(w) {
            let gx = l(x + 1, y - 1) + 2 * l(x + 1, y) + l(x + 1, y + 1)
                - l(x - 1, y - 1)
                - 2 * l(x - 1, y)
                - l(x - 1, y + 1);
            let gy = l(x - 1, y + 1) + 2 * l(x, y + 1) + l(x + 1, y + 1)
                - l(x - 1, y - 1)
                - 2 * l(x, y - 1)
                - l(x + 1, y - 1);
            let m = kernels::round_sqrt_255((gx * gx + gy * gy) as u32);
            let i = (y as usize * w as usize + x as usize) * 4;
            out.pixels_mut()[i..i + 3].copy_from_slice(&[m, m, m]);
        }
    }
    out
}

fn convolve(image: &Image, size: u32, weights: &[i32]) -> Image {
    let (w, h) = (image.width(), image.height());
    let r = i64::from(size / 2);
    let size = size as usize;
    // Alpha passes through; colour channels take the kernel.
    from_fn(w, h, |x, y, c| {
        if c == 3 {
            return px(image, x, y, c);
        }
        let mut sum = 0i32;
        for ky in 0..size {
            for kx in 0..size {
                let sx = edge(x as i64 + kx as i64 - r, w);
                let sy = edge(y as i64 + ky as i64 - r, h);
                sum += weights[ky * size + kx] * i32::from(px(image, sx, sy, c));
            }
        }
        kernels::round_shift(sum, kernels::CONV_SHIFT)
    })
}

fn resize_vertical(image: &Image, pass: &ResizePass) -> Image {
    from_fn(image.width(), pass.taps.len() as u32, |x, y, c| {
        let taps = &pass.taps[y];
        let sum: i32 = (taps.weights.iter().enumerate())
            .map(|(i, &wt)| i32::from(wt) * i32::from(px(image, x, taps.start as usize + i, c)))
            .sum();
        kernels::round_shift(sum, pass.precision)
    })
}

fn resize_horizontal(image: &Image, pass: &ResizePass) -> Image {
    from_fn(pass.taps.len() as u32, image.height(), |x, y, c| {
        let taps = &pass.taps[x];
        let sum: i32 = (taps.weights.iter().enumerate())
            .map(|(i, &wt)| i32::from(wt) * i32::from(px(image, taps.start as usize + i, y, c)))
            .sum();
        kernels::round_shift(sum, pass.precision)
    })
}
