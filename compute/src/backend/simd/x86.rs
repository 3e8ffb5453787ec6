//! SSE2 and AVX2 kernels. Each returns how many leading elements it wrote;
//! the dispatcher finishes the tail with the scalar kernel.

#[cfg(target_arch = "x86")]
use std::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::LumaOp;

/// Two adjacent i16 weights as the (low, high) pair `madd_epi16` multiplies by.
fn weight_pair(lo: i16, hi: i16) -> i32 {
    (u32::from(hi as u16) << 16 | u32::from(lo as u16)) as i32
}

/// `out[i] = round_shift(Σₖ w[k]·taps[k][i], shift)`, 16 bytes per step:
/// bytes widen to i16, two taps interleave, `madd` sums both products into i32.
///
/// # Safety
/// The CPU supports AVX2; every tap has at least `out.len()` bytes; `shift` is 1..=31.
#[target_feature(enable = "avx2")]
pub unsafe fn taps_i16_avx2(taps: &[&[u8]], weights: &[i16], shift: u32, out: &mut [u8]) -> usize {
    let n = out.len();
    let round = _mm256_set1_epi32(1 << (shift - 1));
    let sh = _mm_cvtsi32_si128(shift as i32);
    let zero = _mm256_setzero_si256();
    let mut i = 0;
    while i + 16 <= n {
        let (mut lo, mut hi) = (round, round);
        let mut k = 0;
        while k < taps.len() {
            // SAFETY: every tap has at least n > i + 15 bytes.
            let a = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(taps[k].as_ptr().add(i).cast()) });
            let (b, w) = if k + 1 < taps.len() {
                // SAFETY: as above.
                let b = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(taps[k + 1].as_ptr().add(i).cast()) });
                (b, weight_pair(weights[k], weights[k + 1]))
            } else {
                (zero, weight_pair(weights[k], 0))
            };
            let w = _mm256_set1_epi32(w);
            // Unpack and pack below both work within 128-bit lanes, so the
            // element order they scramble comes back out in order.
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), w));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), w));
            k += 2;
        }
        let words = _mm256_packs_epi32(_mm256_sra_epi32(lo, sh), _mm256_sra_epi32(hi, sh));
        let bytes = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi16(words, words));
        // SAFETY: out has at least i + 16 bytes.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), _mm256_castsi256_si128(bytes)) };
        i += 16;
    }
    i
}

/// 16 bytes of a tap, widened to i16.
///
/// # Safety
/// The CPU supports AVX2; `tap` has at least `i + 16` bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn widen16(tap: &[u8], i: usize) -> __m256i {
    debug_assert!(tap.len() >= i + 16);
    // SAFETY: the caller guarantees 16 bytes at i.
    _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(tap.as_ptr().add(i).cast()) })
}

/// [`taps_i16_avx2`] for a symmetric kernel (`w[k] = w[2r − k]`, as every
/// Gaussian is): the two taps sharing a weight are added first (at most
/// 510, still i16), which halves the multiplies. 32 bytes per step in two
/// independent accumulator chains, so the adds of one overlap the other's.
///
/// # Safety
/// As [`taps_i16_avx2`]; `taps.len()` is odd and the weights are symmetric.
#[target_feature(enable = "avx2")]
pub unsafe fn symmetric_taps_i16_avx2(taps: &[&[u8]], weights: &[i16], shift: u32, out: &mut [u8]) -> usize {
    debug_assert!(taps.len() % 2 == 1 && weights.iter().eq(weights.iter().rev()));
    let r = taps.len() / 2;
    let n = out.len();
    let round = _mm256_set1_epi32(1 << (shift - 1));
    let sh = _mm_cvtsi32_si128(shift as i32);
    // The weights as (w[k], w[k+1]) pairs, the last paired with 0.
    let pairs: Vec<__m256i> = (0..=r)
        .step_by(2)
        .map(|k| _mm256_set1_epi32(weight_pair(weights[k], if k < r { weights[k + 1] } else { 0 })))
        .collect();
    let term = |k: usize, at: usize| {
        // SAFETY: every tap has at least n >= at + 16 bytes (checked by the loops below).
        unsafe {
            if k < r {
                _mm256_add_epi16(widen16(taps[k], at), widen16(taps[2 * r - k], at))
            } else if k == r {
                widen16(taps[r], at)
            } else {
                _mm256_setzero_si256()
            }
        }
    };
    let finish = |lo: __m256i, hi: __m256i| {
        let words = _mm256_packs_epi32(_mm256_sra_epi32(lo, sh), _mm256_sra_epi32(hi, sh));
        _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi16(words, words)))
    };
    let mut i = 0;
    while i + 32 <= n {
        let (mut lo0, mut hi0, mut lo1, mut hi1) = (round, round, round, round);
        for (p, w) in pairs.iter().enumerate() {
            let k = 2 * p;
            let (a0, b0) = (term(k, i), term(k + 1, i));
            let (a1, b1) = (term(k, i + 16), term(k + 1, i + 16));
            lo0 = _mm256_add_epi32(lo0, _mm256_madd_epi16(_mm256_unpacklo_epi16(a0, b0), *w));
            hi0 = _mm256_add_epi32(hi0, _mm256_madd_epi16(_mm256_unpackhi_epi16(a0, b0), *w));
            lo1 = _mm256_add_epi32(lo1, _mm256_madd_epi16(_mm256_unpacklo_epi16(a1, b1), *w));
            hi1 = _mm256_add_epi32(hi1, _mm256_madd_epi16(_mm256_unpackhi_epi16(a1, b1), *w));
        }
        // SAFETY: out has at least i + 32 bytes.
        unsafe {
            _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), finish(lo0, hi0));
            _mm_storeu_si128(out.as_mut_ptr().add(i + 16).cast(), finish(lo1, hi1));
        }
        i += 32;
    }
    while i + 16 <= n {
        let (mut lo, mut hi) = (round, round);
        for (p, w) in pairs.iter().enumerate() {
            let (a, b) = (term(2 * p, i), term(2 * p + 1, i));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), *w));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), *w));
        }
        // SAFETY: out has at least i + 16 bytes.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), finish(lo, hi)) };
        i += 16;
    }
    i
}

/// [`taps_i16_avx2`] with SSE2, 8 bytes per step.
///
/// # Safety
/// The CPU supports SSE2; every tap has at least `out.len()` bytes; `shift` is 1..=31.
#[target_feature(enable = "sse2")]
pub unsafe fn taps_i16_sse2(taps: &[&[u8]], weights: &[i16], shift: u32, out: &mut [u8]) -> usize {
    let n = out.len();
    let round = _mm_set1_epi32(1 << (shift - 1));
    let sh = _mm_cvtsi32_si128(shift as i32);
    let zero = _mm_setzero_si128();
    let mut i = 0;
    while i + 8 <= n {
        let (mut lo, mut hi) = (round, round);
        let mut k = 0;
        while k < taps.len() {
            // SAFETY: every tap has at least n > i + 7 bytes.
            let a = _mm_unpacklo_epi8(unsafe { _mm_loadl_epi64(taps[k].as_ptr().add(i).cast()) }, zero);
            let (b, w) = if k + 1 < taps.len() {
                // SAFETY: as above.
                let b = _mm_unpacklo_epi8(unsafe { _mm_loadl_epi64(taps[k + 1].as_ptr().add(i).cast()) }, zero);
                (b, weight_pair(weights[k], weights[k + 1]))
            } else {
                (zero, weight_pair(weights[k], 0))
            };
            let w = _mm_set1_epi32(w);
            lo = _mm_add_epi32(lo, _mm_madd_epi16(_mm_unpacklo_epi16(a, b), w));
            hi = _mm_add_epi32(hi, _mm_madd_epi16(_mm_unpackhi_epi16(a, b), w));
            k += 2;
        }
        let words = _mm_packs_epi32(_mm_sra_epi32(lo, sh), _mm_sra_epi32(hi, sh));
        // SAFETY: out has at least i + 8 bytes.
        unsafe { _mm_storel_epi64(out.as_mut_ptr().add(i).cast(), _mm_packus_epi16(words, words)) };
        i += 8;
    }
    i
}

/// `out[i] = round_shift(Σₖ w[k]·taps[k][i], shift)` with i32 weights, 8 bytes per step.
///
/// # Safety
/// The CPU supports AVX2; every tap has at least `out.len()` bytes; `shift` is 1..=31.
#[target_feature(enable = "avx2")]
pub unsafe fn taps_i32_avx2(taps: &[&[u8]], weights: &[i32], shift: u32, out: &mut [u8]) -> usize {
    let n = out.len();
    let round = _mm256_set1_epi32(1 << (shift - 1));
    let sh = _mm_cvtsi32_si128(shift as i32);
    let gather = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
    let mut i = 0;
    while i + 8 <= n {
        let mut acc = round;
        for (tap, &w) in taps.iter().zip(weights) {
            // SAFETY: every tap has at least n > i + 7 bytes.
            let v = _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(tap.as_ptr().add(i).cast()) });
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(v, _mm256_set1_epi32(w)));
        }
        let shifted = _mm256_sra_epi32(acc, sh);
        let words = _mm256_packs_epi32(shifted, shifted);
        let bytes = _mm256_packus_epi16(words, words);
        // Lane 0 holds elements 0-3 in its first dword, lane 1 elements 4-7.
        let bytes = _mm256_permutevar8x32_epi32(bytes, gather);
        // SAFETY: out has at least i + 8 bytes.
        unsafe { _mm_storel_epi64(out.as_mut_ptr().add(i).cast(), _mm256_castsi256_si128(bytes)) };
        i += 8;
    }
    i
}

/// Luma-based pixel operations on RGBA pixels, 8 per step.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn luma_avx2(op: LumaOp, pixels: &mut [u8]) -> usize {
    let n = pixels.len() / 32 * 32;
    let byte = _mm256_set1_epi32(0xff);
    let alpha = _mm256_set1_epi32(0xff00_0000u32 as i32);
    let rgb = _mm256_set1_epi32(0x00ff_ffff);
    let (wr, wg, wb) = (_mm256_set1_epi32(77), _mm256_set1_epi32(150), _mm256_set1_epi32(29));
    let half = _mm256_set1_epi32(128);
    let level = _mm256_set1_epi32(match op {
        LumaOp::Threshold(t) => i32::from(t) - 1,
        _ => 0,
    });
    let mut i = 0;
    while i < n {
        // SAFETY: i + 32 <= n <= pixels.len().
        let v = unsafe { _mm256_loadu_si256(pixels.as_ptr().add(i).cast()) };
        let out = match op {
            LumaOp::Invert => _mm256_xor_si256(v, rgb),
            LumaOp::Grayscale | LumaOp::Threshold(_) => {
                let r = _mm256_and_si256(v, byte);
                let g = _mm256_and_si256(_mm256_srli_epi32::<8>(v), byte);
                let b = _mm256_and_si256(_mm256_srli_epi32::<16>(v), byte);
                // Each product fits 16 bits and so does the sum (at most
                // 65408), so 16-bit multiplies in 32-bit lanes suffice.
                let sum = _mm256_add_epi32(
                    _mm256_add_epi32(_mm256_mullo_epi16(r, wr), _mm256_mullo_epi16(g, wg)),
                    _mm256_add_epi32(_mm256_mullo_epi16(b, wb), half),
                );
                let y = _mm256_srli_epi32::<8>(sum);
                let value = if let LumaOp::Threshold(_) = op {
                    _mm256_and_si256(_mm256_cmpgt_epi32(y, level), rgb)
                } else {
                    _mm256_or_si256(_mm256_or_si256(y, _mm256_slli_epi32::<8>(y)), _mm256_slli_epi32::<16>(y))
                };
                _mm256_or_si256(value, _mm256_and_si256(v, alpha))
            }
        };
        // SAFETY: as the load.
        unsafe { _mm256_storeu_si256(pixels.as_mut_ptr().add(i).cast(), out) };
        i += 32;
    }
    n
}

/// [`luma_avx2`] with SSE2, 4 pixels per step.
///
/// # Safety
/// The CPU supports SSE2 (always so on x86_64).
#[target_feature(enable = "sse2")]
pub unsafe fn luma_sse2(op: LumaOp, pixels: &mut [u8]) -> usize {
    let n = pixels.len() / 16 * 16;
    let byte = _mm_set1_epi32(0xff);
    let alpha = _mm_set1_epi32(0xff00_0000u32 as i32);
    let rgb = _mm_set1_epi32(0x00ff_ffff);
    let (wr, wg, wb) = (_mm_set1_epi32(77), _mm_set1_epi32(150), _mm_set1_epi32(29));
    let half = _mm_set1_epi32(128);
    let level = _mm_set1_epi32(match op {
        LumaOp::Threshold(t) => i32::from(t) - 1,
        _ => 0,
    });
    let mut i = 0;
    while i < n {
        // SAFETY: i + 16 <= n <= pixels.len().
        let v = unsafe { _mm_loadu_si128(pixels.as_ptr().add(i).cast()) };
        let out = match op {
            LumaOp::Invert => _mm_xor_si128(v, rgb),
            LumaOp::Grayscale | LumaOp::Threshold(_) => {
                let r = _mm_and_si128(v, byte);
                let g = _mm_and_si128(_mm_srli_epi32::<8>(v), byte);
                let b = _mm_and_si128(_mm_srli_epi32::<16>(v), byte);
                let sum = _mm_add_epi32(
                    _mm_add_epi32(_mm_mullo_epi16(r, wr), _mm_mullo_epi16(g, wg)),
                    _mm_add_epi32(_mm_mullo_epi16(b, wb), half),
                );
                let y = _mm_srli_epi32::<8>(sum);
                let value = if let LumaOp::Threshold(_) = op {
                    _mm_and_si128(_mm_cmpgt_epi32(y, level), rgb)
                } else {
                    _mm_or_si128(_mm_or_si128(y, _mm_slli_epi32::<8>(y)), _mm_slli_epi32::<16>(y))
                };
                _mm_or_si128(value, _mm_and_si128(v, alpha))
            }
        };
        // SAFETY: as the load.
        unsafe { _mm_storeu_si128(pixels.as_mut_ptr().add(i).cast(), out) };
        i += 16;
    }
    n
}
