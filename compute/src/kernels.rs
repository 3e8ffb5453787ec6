//! The arithmetic every backend shares: fixed-point weights, rounding and
//! edge rules. Defining filters over integers makes the result a property of
//! the definition, not of a backend's float unit: CPU, SIMD and GPU backends
//! compute the same sums and round them the same way.
//!
//! - Pixels are RGBA8. Out-of-image taps read the nearest edge pixel.
//! - Blurs run a horizontal pass, round to 8 bits, then a vertical pass.
//! - A pass computes `(Σ wᵢ·pᵢ + ½·2ˢ) >> s` with an arithmetic (flooring)
//!   shift, then clamps to 0..=255.

use wimpy_schema::job::ResizeFilter;

/// Fixed-point fraction bits of blur weights (Q14: every weight fits i16,
/// and a pass's sum, at most 255 · 2¹⁴, fits i32 with room to spare).
pub const BLUR_SHIFT: u32 = 14;
/// Fixed-point fraction bits of user convolution weights (Q12, |w| ≤ 64).
pub const CONV_SHIFT: u32 = 12;
/// Fixed-point fraction bits of contrast and sharpen amounts (Q8).
pub const AMOUNT_SHIFT: u32 = 8;

/// BT.601 luma with weights of 256: `(77R + 150G + 29B + 128) >> 8`.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8) as u8
}

/// `(sum + ½) >> shift`, floored, clamped to a byte.
#[inline]
pub fn round_shift(sum: i32, shift: u32) -> u8 {
    ((sum + (1 << (shift - 1))) >> shift).clamp(0, 255) as u8
}

/// `√n` rounded to the nearest integer, exactly, capped at 255.
#[inline]
pub fn round_sqrt_255(n: u32) -> u8 {
    // (k + ½)² = k² + k + ¼, so √n rounds up past k exactly when n > k² + k.
    let mut k = (n as f64).sqrt() as u32;
    while k * k > n {
        k -= 1;
    }
    while (k + 1) * (k + 1) <= n {
        k += 1;
    }
    let rounded = if n > k * k + k { k + 1 } else { k };
    rounded.min(255) as u8
}

/// A symmetric 1-D kernel of Q14 weights summing to exactly 2¹⁴.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel1d {
    /// Taps on each side of the centre.
    pub radius: u32,
    /// `2 × radius + 1` weights, left to right.
    pub weights: Vec<i16>,
}

impl Kernel1d {
    /// The Gaussian of standard deviation `sigma`, radius ⌈3σ⌉.
    pub fn gaussian(sigma: f32) -> Kernel1d {
        let sigma = f64::from(sigma);
        let radius = (3.0 * sigma).ceil().max(1.0) as u32;
        let exact: Vec<f64> =
            (-(radius as i64)..=radius as i64).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()).collect();
        let total: f64 = exact.iter().sum();
        let scale = f64::from(1u32 << BLUR_SHIFT);
        let mut weights: Vec<i16> = exact.iter().map(|w| (w / total * scale).round() as i16).collect();
        // Rounding each weight can leave the sum a little off 2¹⁴; the centre
        // takes the difference so a flat image stays exactly flat.
        let sum: i32 = weights.iter().map(|&w| i32::from(w)).sum();
        weights[radius as usize] += ((1 << BLUR_SHIFT) - sum) as i16;
        Kernel1d { radius, weights }
    }
}

/// A user convolution kernel in Q12.
pub fn conv_weights(weights: &[f32]) -> Vec<i32> {
    weights.iter().map(|w| (f64::from(*w) * f64::from(1u32 << CONV_SHIFT)).round() as i32).collect()
}

/// A Q8 amount (contrast factor, unsharp amount).
pub fn amount_q8(amount: f32) -> i32 {
    (f64::from(amount) * f64::from(1u32 << AMOUNT_SHIFT)).round() as i32
}

/// Brightness/contrast of one channel value:
/// `((v − 128)·c + (128 + b)·256 + 128) >> 8`, clamped (c in Q8).
#[inline]
pub fn brightness_contrast(v: u8, brightness: i32, contrast_q8: i32) -> u8 {
    let t = (i32::from(v) - 128) * contrast_q8 + (128 + brightness) * 256 + 128;
    (t.clamp(0, 0xffff) >> 8) as u8
}

/// Unsharp mask of one channel value against its blurred value:
/// `(v·256 + (v − blurred)·amount + 128) >> 8`, clamped (amount in Q8).
#[inline]
pub fn unsharp(v: u8, blurred: u8, amount_q8: i32) -> u8 {
    let t = i32::from(v) * 256 + (i32::from(v) - i32::from(blurred)) * amount_q8 + 128;
    (t.clamp(0, 0xffff) >> 8) as u8
}

/// Box blur of one channel: the rounded mean of `2r + 1` values.
#[inline]
pub fn box_mean(sum: u32, radius: u32) -> u8 {
    ((sum + radius) / (2 * radius + 1)) as u8
}

/// The weights of one output pixel of a resize pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeTaps {
    /// First input pixel.
    pub start: u32,
    /// One weight per input pixel from `start`, at the pass's precision.
    pub weights: Vec<i16>,
}

/// The weights of one resize pass (one axis), in the convolution scheme
/// Pillow made standard: output pixel `i` centres on input coordinate
/// `(i + ½)·scale`, the filter widens by `scale` when shrinking, weights are
/// normalised per pixel, then fixed to the largest precision that keeps every
/// weight inside i16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizePass {
    /// Fraction bits of the weights.
    pub precision: u32,
    /// One entry per output pixel.
    pub taps: Vec<ResizeTaps>,
}

impl ResizePass {
    /// The pass taking `in_size` pixels to `out_size`.
    pub fn new(in_size: u32, out_size: u32, filter: ResizeFilter) -> ResizePass {
        let support = filter_support(filter);
        let f: fn(f64) -> f64 = match filter {
            ResizeFilter::Bilinear => triangle,
            ResizeFilter::Lanczos3 => lanczos3,
        };
        let scale = f64::from(in_size) / f64::from(out_size);
        let filter_scale = scale.max(1.0);
        let radius = support * filter_scale;
        let mut exact: Vec<(u32, Vec<f64>)> = Vec::with_capacity(out_size as usize);
        for i in 0..out_size {
            let in_center = (f64::from(i) + 0.5) * scale;
            let lo = (in_center - radius).floor().max(0.0) as u32;
            let hi = (in_center + radius).ceil().min(f64::from(in_size)) as u32;
            let center = in_center - 0.5;
            let mut start = lo;
            let mut w: Vec<f64> = Vec::with_capacity((hi - lo) as usize);
            for x in lo..hi {
                let v = f((f64::from(x) - center) / filter_scale);
                if w.is_empty() && v == 0.0 {
                    start += 1;
                } else {
                    w.push(v);
                }
            }
            while w.last() == Some(&0.0) {
                w.pop();
            }
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            exact.push((start, w));
        }
        let max = exact.iter().flat_map(|(_, w)| w.iter().copied()).fold(0.0f64, f64::max);
        // The largest precision p with round(max · 2^(p+1)) still below 2¹⁵
        // stops one short of overflowing i16 at p + 1.
        let mut precision = 0;
        for p in 0..22u32 {
            precision = p;
            if (max * f64::from(1u32 << (p + 1))).round() >= f64::from(1u32 << 15) {
                break;
            }
        }
        let scale = f64::from(1u32 << precision);
        let taps = exact
            .into_iter()
            .map(|(start, w)| ResizeTaps { start, weights: w.iter().map(|v| (v * scale).round() as i16).collect() })
            .collect();
        ResizePass { precision, taps }
    }
}

/// How far a resize filter reaches, in input pixels, before it widens for
/// shrinking: each output pixel reads up to `2 · support · max(scale, 1) + 1`
/// input pixels.
pub fn filter_support(filter: ResizeFilter) -> f64 {
    match filter {
        ResizeFilter::Bilinear => 1.0,
        ResizeFilter::Lanczos3 => 3.0,
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos3(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) { sinc(x) * sinc(x / 3.0) } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_weights_sum_to_one_exactly_and_are_symmetric() {
        for sigma in [0.1, 0.5, 1.0, 2.0, 7.3, 32.0] {
            let k = Kernel1d::gaussian(sigma);
            assert_eq!(k.weights.len(), 2 * k.radius as usize + 1);
            assert_eq!(k.weights.iter().map(|&w| i32::from(w)).sum::<i32>(), 1 << BLUR_SHIFT);
            let rev: Vec<i16> = k.weights.iter().rev().copied().collect();
            assert_eq!(rev, k.weights);
        }
    }

    #[test]
    fn rounded_sqrt_is_exact() {
        for n in 0..300_000u32 {
            let expect = ((n as f64).sqrt().round() as u32).min(255) as u8;
            assert_eq!(round_sqrt_255(n), expect, "n = {n}");
        }
    }

    #[test]
    fn luma_of_grey_is_grey() {
        for v in 0..=255u8 {
            assert_eq!(luma(v, v, v), v);
        }
    }

    #[test]
    fn identity_adjustments_are_identity() {
        for v in 0..=255u8 {
            assert_eq!(brightness_contrast(v, 0, 256), v);
            assert_eq!(unsharp(v, v, 512), v);
        }
    }

    #[test]
    fn resize_passes_cover_the_input() {
        for (i, o) in [(100, 37), (37, 100), (5, 1), (1, 5), (640, 640)] {
            for filter in [ResizeFilter::Bilinear, ResizeFilter::Lanczos3] {
                let pass = ResizePass::new(i, o, filter);
                assert_eq!(pass.taps.len(), o as usize);
                for t in &pass.taps {
                    assert!(t.start + t.weights.len() as u32 <= i);
                    let sum: i32 = t.weights.iter().map(|&w| i32::from(w)).sum();
                    let one = 1i32 << pass.precision;
                    assert!((sum - one).abs() <= t.weights.len() as i32, "{sum} vs {one}");
                }
            }
        }
    }
}
