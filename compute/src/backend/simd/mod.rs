//! The SIMD backend: the `cpu` backend's arithmetic, vectorised.
//!
//! The instruction set is chosen at run time: AVX2 where the CPU has it,
//! otherwise SSE2 on x86_64; NEON on aarch64. The hot loops (the fixed-point
//! multiply-accumulate every blur, sharpen and user convolution is made of,
//! and the luma-based pixel operations) are written with `std::arch`
//! intrinsics; every kernel ends with the scalar code for the tail. Resize
//! uses fast_image_resize (NEON/SSE4.1/AVX2), which computes Pillow-style
//! fixed-point convolutions exactly as [`ResizePass`](crate::kernels::ResizePass)
//! defines them; hashes use the blake3 and sha2 crates (SIMD and SHA
//! extensions where present). fast_image_resize picks its own instruction
//! set, and agreement with the definition is a tested property of the
//! version in Cargo.lock, not a promise of the library.

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86;

use fast_image_resize as fir;
use sha2::Digest;
use wimpy_schema::job::{HashAlgo, HashOp, ImageOp, ResizeFilter};

use super::{Backend, BackendInfo, BackendKind, hash_rounds_on_host, run_on_host};
use crate::kernels::{self, Kernel1d};
use crate::{ComputeError, Deadline, Image, Limits, StageTimes, geometry};

/// The instruction set the kernels run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable code (no vector unit known to this build).
    Scalar,
    /// x86 baseline vectors (128-bit).
    Sse2,
    /// x86 256-bit integer vectors.
    Avx2,
    /// aarch64 vectors (128-bit).
    Neon,
}

impl Isa {
    /// The best instruction set this CPU has.
    pub fn detect() -> Isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            if std::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
            if std::is_x86_feature_detected!("sse2") {
                return Isa::Sse2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                return Isa::Neon;
            }
        }
        Isa::Scalar
    }

    /// Every instruction set this CPU can run, best last (for tests).
    pub fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Scalar];
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            if std::is_x86_feature_detected!("sse2") {
                out.push(Isa::Sse2);
            }
            if std::is_x86_feature_detected!("avx2") {
                out.push(Isa::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                out.push(Isa::Neon);
            }
        }
        out
    }

    fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Sse2 => "SSE2",
            Isa::Avx2 => "AVX2",
            Isa::Neon => "NEON",
        }
    }
}

/// A pixel operation computed from luma (or not at all, for invert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LumaOp {
    /// Luma into R, G, B.
    Grayscale,
    /// 255 where luma ≥ level.
    Threshold(u8),
    /// 255 − value.
    Invert,
}

/// The SIMD backend.
#[derive(Debug)]
pub struct SimdBackend {
    isa: Isa,
    info: BackendInfo,
    /// Kept between jobs: its scratch buffers are reused instead of
    /// allocated (and page-faulted in) for every resize.
    resizer: fir::Resizer,
}

impl SimdBackend {
    /// The backend on the best instruction set this CPU has.
    pub fn new() -> SimdBackend {
        SimdBackend::with_isa(Isa::detect())
    }

    /// The backend on `isa`, which the CPU must support (see [`Isa::available`]).
    pub fn with_isa(isa: Isa) -> SimdBackend {
        assert!(Isa::available().contains(&isa), "{isa:?} is not supported by this CPU");
        SimdBackend {
            isa,
            info: BackendInfo { kind: BackendKind::Simd, device: isa.name().into(), software: false },
            resizer: fir::Resizer::new(),
        }
    }
}

impl Default for SimdBackend {
    fn default() -> SimdBackend {
        SimdBackend::new()
    }
}

impl Backend for SimdBackend {
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
        run_on_host(image, ops, limits, deadline, times, |op, image| self.apply(op, image))
    }

    fn hash(
        &mut self,
        data: &[u8],
        op: HashOp,
        deadline: &Deadline,
        times: &mut StageTimes,
    ) -> Result<[u8; 32], ComputeError> {
        hash_rounds_on_host(data, op.rounds, deadline, times, |d| match op.algo {
            HashAlgo::Blake3 => *blake3::hash(d).as_bytes(),
            HashAlgo::Sha256 => sha2::Sha256::digest(d).into(),
        })
    }
}

impl SimdBackend {
    fn apply(&mut self, op: &ImageOp, image: Image) -> Result<Image, ComputeError> {
        Ok(match op {
            ImageOp::Grayscale => self.luma(LumaOp::Grayscale, image),
            ImageOp::Threshold(level) => self.luma(LumaOp::Threshold(*level), image),
            ImageOp::Invert => self.luma(LumaOp::Invert, image),
            ImageOp::BrightnessContrast { brightness, contrast } => {
                // A function of one channel value: a 256-entry table is exact.
                let c = kernels::amount_q8(*contrast);
                let table: [u8; 256] = std::array::from_fn(|v| kernels::brightness_contrast(v as u8, *brightness, c));
                let mut image = image;
                for p in image.pixels_mut().chunks_exact_mut(4) {
                    p[0] = table[p[0] as usize];
                    p[1] = table[p[1] as usize];
                    p[2] = table[p[2] as usize];
                }
                image
            }
            ImageOp::GaussianBlur { sigma } => self.gaussian(&image, &Kernel1d::gaussian(*sigma)),
            ImageOp::BoxBlur { radius } => box_blur(&image, *radius),
            ImageOp::Sharpen { sigma, amount } => {
                let blurred = self.gaussian(&image, &Kernel1d::gaussian(*sigma));
                let a = kernels::amount_q8(*amount);
                let mut image = image;
                for (p, b) in image.pixels_mut().chunks_exact_mut(4).zip(blurred.pixels().chunks_exact(4)) {
                    p[0] = kernels::unsharp(p[0], b[0], a);
                    p[1] = kernels::unsharp(p[1], b[1], a);
                    p[2] = kernels::unsharp(p[2], b[2], a);
                }
                image
            }
            ImageOp::Sobel => sobel(image),
            ImageOp::Convolve(k) => self.convolve(&image, k.size, &kernels::conv_weights(&k.weights)),
            ImageOp::Resize { width, height, filter } => resize(&mut self.resizer, &image, *width, *height, *filter)?,
            ImageOp::Crop { x, y, width, height } => geometry::crop(&image, *x, *y, *width, *height),
            ImageOp::Flip(axis) => geometry::flip(&image, *axis),
            ImageOp::Rotate(r) => geometry::rotate(&image, *r),
        })
    }

    fn luma(&self, op: LumaOp, mut image: Image) -> Image {
        let pixels = image.pixels_mut();
        let done = match self.isa {
            // SAFETY: the ISA was detected on this CPU.
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => unsafe { x86::luma_avx2(op, pixels) },
            // SAFETY: as above.
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Sse2 => unsafe { x86::luma_sse2(op, pixels) },
            // SAFETY: as above.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::luma(op, pixels) },
            _ => 0,
        };
        for p in pixels[done..].chunks_exact_mut(4) {
            let v = match op {
                LumaOp::Invert => [255 - p[0], 255 - p[1], 255 - p[2]],
                LumaOp::Grayscale => [kernels::luma(p[0], p[1], p[2]); 3],
                LumaOp::Threshold(t) => [if kernels::luma(p[0], p[1], p[2]) >= t { 255 } else { 0 }; 3],
            };
            p[..3].copy_from_slice(&v);
        }
        image
    }

    /// `out[i] = round_shift(Σₖ w[k]·taps[k][i], shift)`.
    fn taps_i16(&self, taps: &[&[u8]], weights: &[i16], shift: u32, out: &mut [u8]) {
        // The kernels read out.len() bytes of every tap: checked, not assumed.
        assert!(taps.iter().all(|t| t.len() >= out.len()));
        let done = match self.isa {
            // SAFETY: the ISA was detected on this CPU; taps are long enough (checked above).
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => unsafe { x86::taps_i16_avx2(taps, weights, shift, out) },
            // SAFETY: as above.
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Sse2 => unsafe { x86::taps_i16_sse2(taps, weights, shift, out) },
            // SAFETY: as above.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::taps_i16(taps, weights, shift, out) },
            _ => 0,
        };
        scalar_taps(taps, weights, shift, &mut out[done..], done);
    }

    /// [`Self::taps_i16`] for a symmetric kernel, which AVX2 sums in half the multiplies.
    fn symmetric_taps_i16(&self, taps: &[&[u8]], weights: &[i16], shift: u32, out: &mut [u8]) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if self.isa == Isa::Avx2 {
            // The kernels read out.len() bytes of every tap: checked, not assumed.
            assert!(taps.iter().all(|t| t.len() >= out.len()));
            // SAFETY: AVX2 was detected; taps are long enough; Kernel1d weights are symmetric.
            let done = unsafe { x86::symmetric_taps_i16_avx2(taps, weights, shift, out) };
            scalar_taps(taps, weights, shift, &mut out[done..], done);
            return;
        }
        self.taps_i16(taps, weights, shift, out);
    }

    /// As [`Self::taps_i16`] with i32 weights.
    fn taps_i32(&self, taps: &[&[u8]], weights: &[i32], shift: u32, out: &mut [u8]) {
        // The kernels read out.len() bytes of every tap: checked, not assumed.
        assert!(taps.iter().all(|t| t.len() >= out.len()));
        let done = match self.isa {
            // SAFETY: the ISA was detected on this CPU; taps are long enough.
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => unsafe { x86::taps_i32_avx2(taps, weights, shift, out) },
            // SAFETY: as above.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::taps_i32(taps, weights, shift, out) },
            _ => 0,
        };
        scalar_taps(taps, weights, shift, &mut out[done..], done);
    }

    /// Horizontal then vertical pass, all four channels. A horizontal pass
    /// is the same multiply-accumulate as a vertical one over a row padded
    /// with its edge pixels, with taps 4 bytes apart instead of a row apart.
    fn gaussian(&self, image: &Image, k: &Kernel1d) -> Image {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let r = k.radius as usize;
        let stride = w * 4;
        let mut across = Image::zeroed(w as u32, h as u32);
        let mut padded = vec![0u8; (w + 2 * r) * 4];
        for y in 0..h {
            pad_row(image.row(y), r, &mut padded);
            let taps: Vec<&[u8]> = (0..k.weights.len()).map(|t| &padded[t * 4..t * 4 + stride]).collect();
            self.symmetric_taps_i16(
                &taps,
                &k.weights,
                kernels::BLUR_SHIFT,
                &mut across.pixels_mut()[y * stride..(y + 1) * stride],
            );
        }
        let mut out = Image::zeroed(w as u32, h as u32);
        for y in 0..h {
            let taps: Vec<&[u8]> =
                (0..k.weights.len()).map(|t| across.row((y + t).saturating_sub(r).min(h - 1))).collect();
            self.symmetric_taps_i16(
                &taps,
                &k.weights,
                kernels::BLUR_SHIFT,
                &mut out.pixels_mut()[y * stride..(y + 1) * stride],
            );
        }
        out
    }

    /// A `size × size` kernel over rows padded with their edge pixels; the
    /// alpha channel is put back afterwards.
    fn convolve(&self, image: &Image, size: u32, weights: &[i32]) -> Image {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let (size, r) = (size as usize, size as usize / 2);
        let stride = w * 4;
        let padded_stride = (w + 2 * r) * 4;
        let mut padded = vec![0u8; padded_stride * h];
        for y in 0..h {
            pad_row(image.row(y), r, &mut padded[y * padded_stride..(y + 1) * padded_stride]);
        }
        let mut out = image.clone();
        for y in 0..h {
            let mut taps: Vec<&[u8]> = Vec::with_capacity(size * size);
            for ky in 0..size {
                let sy = (y + ky).saturating_sub(r).min(h - 1);
                let row = &padded[sy * padded_stride..(sy + 1) * padded_stride];
                taps.extend((0..size).map(|kx| &row[kx * 4..kx * 4 + stride]));
            }
            let dst = &mut out.pixels_mut()[y * stride..(y + 1) * stride];
            self.taps_i32(&taps, weights, kernels::CONV_SHIFT, dst);
            for (d, s) in dst.chunks_exact_mut(4).zip(image.row(y).chunks_exact(4)) {
                d[3] = s[3];
            }
        }
        out
    }
}

/// The scalar form of the tap kernels, for what the vector loop left:
/// `out[j]` is output element `from + j`.
fn scalar_taps<W: Copy + Into<i32>>(taps: &[&[u8]], weights: &[W], shift: u32, out: &mut [u8], from: usize) {
    for (j, o) in out.iter_mut().enumerate() {
        let sum: i32 = taps.iter().zip(weights).map(|(t, &w)| w.into() * i32::from(t[from + j])).sum();
        *o = kernels::round_shift(sum, shift);
    }
}

/// Copies `row` into `padded` with `r` copies of its first and last pixel on either side.
fn pad_row(row: &[u8], r: usize, padded: &mut [u8]) {
    let stride = row.len();
    let (first, last) = (&row[..4], &row[stride - 4..]);
    for i in 0..r {
        padded[i * 4..i * 4 + 4].copy_from_slice(first);
        padded[(r * 4 + stride) + i * 4..(r * 4 + stride) + i * 4 + 4].copy_from_slice(last);
    }
    padded[r * 4..r * 4 + stride].copy_from_slice(row);
}

/// Box blur by running sums: O(1) per pixel whatever the radius. The mean
/// `(s + r) / n` is a multiply by ⌈2³²/n⌉ and a shift, exact for every sum a
/// pass can reach (s + r < 2¹⁶).
fn box_blur(image: &Image, radius: u32) -> Image {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let r = radius as usize;
    let n = 2 * radius + 1;
    let magic = (1u64 << 32).div_ceil(u64::from(n));
    let mean = |s: u32| (((u64::from(s + radius)) * magic) >> 32) as u8;
    let stride = w * 4;
    let mut across = Image::zeroed(w as u32, h as u32);
    for y in 0..h {
        let src = image.row(y);
        let dst = &mut across.pixels_mut()[y * stride..(y + 1) * stride];
        let at = |x: isize, c: usize| u32::from(src[(x.clamp(0, w as isize - 1) as usize) * 4 + c]);
        for c in 0..4 {
            let mut sum: u32 = (-(r as isize)..=r as isize).map(|x| at(x, c)).sum();
            for x in 0..w {
                dst[x * 4 + c] = mean(sum);
                sum += at(x as isize + r as isize + 1, c);
                sum -= at(x as isize - r as isize, c);
            }
        }
    }
    let mut out = Image::zeroed(w as u32, h as u32);
    let row_at = |y: isize| y.clamp(0, h as isize - 1) as usize;
    let mut sums = vec![0u32; stride];
    for d in -(r as isize)..=r as isize {
        for (s, &v) in sums.iter_mut().zip(across.row(row_at(d))) {
            *s += u32::from(v);
        }
    }
    for y in 0..h {
        let dst = &mut out.pixels_mut()[y * stride..(y + 1) * stride];
        for (d, &s) in dst.iter_mut().zip(&sums) {
            *d = mean(s);
        }
        let (add, sub) = (across.row(row_at(y as isize + r as isize + 1)), across.row(row_at(y as isize - r as isize)));
        for ((s, &a), &b) in sums.iter_mut().zip(add).zip(sub) {
            *s = *s + u32::from(a) - u32::from(b);
        }
    }
    out
}

/// Sobel magnitude on a luma plane padded by one pixel, row at a time in
/// loops the compiler vectorises; √ in f32 is exact here (see below).
fn sobel(mut image: Image) -> Image {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let pw = w + 2;
    let mut plane = vec![0i32; pw * h];
    for y in 0..h {
        let row = &mut plane[y * pw..(y + 1) * pw];
        for (x, p) in image.row(y).chunks_exact(4).enumerate() {
            row[x + 1] = i32::from(kernels::luma(p[0], p[1], p[2]));
        }
        row[0] = row[1];
        row[w + 1] = row[w];
    }
    let mut mag = vec![0u8; w];
    for y in 0..h {
        let p = &plane[y.saturating_sub(1) * pw..][..pw];
        let c = &plane[y * pw..][..pw];
        let n = &plane[(y + 1).min(h - 1) * pw..][..pw];
        for x in 0..w {
            let gx = (p[x + 2] - p[x]) + 2 * (c[x + 2] - c[x]) + (n[x + 2] - n[x]);
            let gy = (n[x] + 2 * n[x + 1] + n[x + 2]) - (p[x] + 2 * p[x + 1] + p[x + 2]);
            // gx² + gy² < 2²¹ is exact in f32 and its √ is correctly rounded;
            // below 255.5 a root is never within f32 rounding of a half, so
            // truncating √ + ½ rounds it exactly.
            let m = ((gx * gx + gy * gy) as f32).sqrt() + 0.5;
            mag[x] = m.min(255.0) as u8;
        }
        for (px, &m) in image.pixels_mut()[y * w * 4..(y + 1) * w * 4].chunks_exact_mut(4).zip(&mag) {
            px[0] = m;
            px[1] = m;
            px[2] = m;
        }
    }
    image
}

fn resize(
    resizer: &mut fir::Resizer,
    image: &Image,
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> Result<Image, ComputeError> {
    let device_error =
        |e: &dyn std::fmt::Display| ComputeError::Device { backend: BackendKind::Simd, reason: e.to_string() };
    let src = fir::images::ImageRef::new(image.width(), image.height(), image.pixels(), fir::PixelType::U8x4)
        .map_err(|e| device_error(&e))?;
    let mut dst = fir::images::Image::new(width, height, fir::PixelType::U8x4);
    let filter = match filter {
        ResizeFilter::Bilinear => fir::FilterType::Bilinear,
        ResizeFilter::Lanczos3 => fir::FilterType::Lanczos3,
    };
    // Channels are independent here, as in every other backend: no alpha
    // premultiplication.
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(filter)).use_alpha(false);
    resizer.resize(&src, &mut dst, &options).map_err(|e| device_error(&e))?;
    Ok(Image::new(width, height, dst.into_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_unit_is_found() {
        let isa = Isa::detect();
        #[cfg(target_arch = "aarch64")]
        assert_eq!(isa, Isa::Neon);
        #[cfg(target_arch = "x86_64")]
        assert!(matches!(isa, Isa::Sse2 | Isa::Avx2), "{isa:?}");
        assert_eq!(Isa::available().last(), Some(&isa));
    }
}
