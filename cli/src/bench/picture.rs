//! Pictures for the PICT and compute workloads: photo-like PNGs (smooth
//! gradients, soft shapes, sensor-like noise) that differ by seed, so the
//! filters see realistic content and PNG does not compress them to nothing.

use image::{ImageBuffer, Rgb};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A `width` x `height` PNG, the same for the same seed.
pub fn png(seed: u64, width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    // A few soft discs on a two-colour gradient.
    let base: [[f64; 3]; 2] = [rng.random(), rng.random()].map(|c: [f64; 3]| c.map(|v| 40.0 + v * 180.0));
    let discs: Vec<(f64, f64, f64, [f64; 3])> = (0..6)
        .map(|_| {
            (
                rng.random::<f64>() * w,
                rng.random::<f64>() * h,
                (0.05 + rng.random::<f64>() * 0.2) * w.min(h),
                rng.random(),
            )
        })
        .collect();
    let img = ImageBuffer::from_fn(width, height, |x, y| {
        let (fx, fy) = (f64::from(x), f64::from(y));
        let t = (fx / w + fy / h) / 2.0;
        let mut px = [0f64; 3];
        for (c, v) in px.iter_mut().enumerate() {
            *v = base[0][c] * (1.0 - t) + base[1][c] * t;
        }
        for (cx, cy, r, colour) in &discs {
            let d = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt();
            let inside = ((r - d) / (r * 0.15)).clamp(0.0, 1.0);
            for (c, v) in px.iter_mut().enumerate() {
                *v = *v * (1.0 - inside) + colour[c] * 255.0 * inside;
            }
        }
        let noise = f64::from(rng.random_range(-6i32..=6));
        Rgb(px.map(|v| (v + noise).round().clamp(0.0, 255.0) as u8))
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| format!("encoding a test picture: {e}"))?;
    Ok(out.into_inner())
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?}: write WIDTHxHEIGHT, e.g. 640x480"))?;
    let dim = |v: &str| match v.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?}: sides must be whole numbers above 0")),
    };
    Ok((dim(w)?, dim(h)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_decode_at_their_size_and_differ_by_seed() {
        let a = png(1, 64, 48).unwrap();
        let img = image::load_from_memory(&a).unwrap();
        assert_eq!((img.width(), img.height()), (64, 48));
        assert_eq!(a, png(1, 64, 48).unwrap());
        assert_ne!(a, png(2, 64, 48).unwrap());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("640x480"), Ok((640, 480)));
        assert!(parse_size("640").is_err());
        assert!(parse_size("0x5").is_err());
    }
}
