//! NEON kernels (aarch64: Raspberry Pi 3, 4 and 5). Each returns how many
//! leading elements it wrote; the dispatcher finishes the tail with the
//! scalar kernel.

use std::arch::aarch64::*;

use super::LumaOp;

/// `out[i] = round_shift(Σₖ w[k]·taps[k][i], shift)`, 8 bytes per step:
/// bytes widen to i16 and multiply-accumulate into i32 (`smlal`).
///
/// # Safety
/// Every tap has at least `out.len()` bytes; `shift` is 1..=31.
#[target_feature(enable = "neon")]
pub unsafe fn taps_i16(taps: &[&[u8]], weights: &[i16], shift: u32, out: &mut [u8]) -> usize {
    let n = out.len();
    let round = vdupq_n_s32(1 << (shift - 1));
    let sh = vdupq_n_s32(-(shift as i32));
    let mut i = 0;
    while i + 8 <= n {
        let (mut lo, mut hi) = (round, round);
        for (tap, &w) in taps.iter().zip(weights) {
            // SAFETY: every tap has at least n >= i + 8 bytes.
            let v = vreinterpretq_s16_u16(vmovl_u8(unsafe { vld1_u8(tap.as_ptr().add(i)) }));
            lo = vmlal_n_s16(lo, vget_low_s16(v), w);
            hi = vmlal_n_s16(hi, vget_high_s16(v), w);
        }
        // A left shift by a negative count is an arithmetic right shift.
        let words = vcombine_s16(vqmovn_s32(vshlq_s32(lo, sh)), vqmovn_s32(vshlq_s32(hi, sh)));
        // SAFETY: out has at least i + 8 bytes.
        unsafe { vst1_u8(out.as_mut_ptr().add(i), vqmovun_s16(words)) };
        i += 8;
    }
    i
}

/// The same with i32 weights.
///
/// # Safety
/// Every tap has at least `out.len()` bytes; `shift` is 1..=31.
#[target_feature(enable = "neon")]
pub unsafe fn taps_i32(taps: &[&[u8]], weights: &[i32], shift: u32, out: &mut [u8]) -> usize {
    let n = out.len();
    let round = vdupq_n_s32(1 << (shift - 1));
    let sh = vdupq_n_s32(-(shift as i32));
    let mut i = 0;
    while i + 8 <= n {
        let (mut lo, mut hi) = (round, round);
        for (tap, &w) in taps.iter().zip(weights) {
            // SAFETY: every tap has at least n >= i + 8 bytes.
            let v = vreinterpretq_s16_u16(vmovl_u8(unsafe { vld1_u8(tap.as_ptr().add(i)) }));
            lo = vmlaq_n_s32(lo, vmovl_s16(vget_low_s16(v)), w);
            hi = vmlaq_n_s32(hi, vmovl_s16(vget_high_s16(v)), w);
        }
        let words = vcombine_s16(vqmovn_s32(vshlq_s32(lo, sh)), vqmovn_s32(vshlq_s32(hi, sh)));
        // SAFETY: out has at least i + 8 bytes.
        unsafe { vst1_u8(out.as_mut_ptr().add(i), vqmovun_s16(words)) };
        i += 8;
    }
    i
}

/// Luma-based pixel operations, 8 pixels per step: `ld4` splits the
/// channels, `umull`/`umlal` form the weighted sum, `shrn` rounds it.
///
/// # Safety
/// None beyond aarch64's baseline.
#[target_feature(enable = "neon")]
pub unsafe fn luma(op: LumaOp, pixels: &mut [u8]) -> usize {
    let n = pixels.len() / 32 * 32;
    let mut i = 0;
    while i < n {
        // SAFETY: i + 32 <= n <= pixels.len().
        let mut p = unsafe { vld4_u8(pixels.as_ptr().add(i)) };
        match op {
            LumaOp::Invert => {
                p.0 = vmvn_u8(p.0);
                p.1 = vmvn_u8(p.1);
                p.2 = vmvn_u8(p.2);
            }
            LumaOp::Grayscale | LumaOp::Threshold(_) => {
                let sum = vmlal_u8(vmlal_u8(vmull_u8(p.0, vdup_n_u8(77)), p.1, vdup_n_u8(150)), p.2, vdup_n_u8(29));
                let y = vshrn_n_u16::<8>(vaddq_u16(sum, vdupq_n_u16(128)));
                let y = match op {
                    LumaOp::Threshold(t) => vcge_u8(y, vdup_n_u8(t)),
                    _ => y,
                };
                p.0 = y;
                p.1 = y;
                p.2 = y;
            }
        }
        // SAFETY: as the load.
        unsafe { vst4_u8(pixels.as_mut_ptr().add(i), p) };
        i += 32;
    }
    n
}
