//! Operations that move pixels without arithmetic (crop, flip, rotate), and
//! the output size of every operation. Every CPU backend shares these: there
//! is nothing to compute differently, only memory to move.

use wimpy_schema::job::{FlipAxis, ImageOp, Rotation};

use super::{ComputeError, Image, Limits};

/// The size `op` turns a `width × height` image into, refused if it breaks
/// the limits or does not fit.
pub fn output_size(op: &ImageOp, width: u32, height: u32, limits: &Limits) -> Result<(u32, u32), ComputeError> {
    let size = match *op {
        ImageOp::Resize { width: w, height: h, .. } => {
            // Resize runs its vertical pass first (in every backend), so the
            // image between the passes is the input's width by the output's
            // height: it must fit the limit too.
            if h != height {
                limits.check_size(width, h)?;
            }
            (w, h)
        }
        ImageOp::Crop { x, y, width: w, height: h } => {
            if u64::from(x) + u64::from(w) > u64::from(width) || u64::from(y) + u64::from(h) > u64::from(height) {
                return Err(ComputeError::CropOutside { x, y, crop_width: w, crop_height: h, width, height });
            }
            (w, h)
        }
        ImageOp::Rotate(Rotation::Quarter | Rotation::ThreeQuarters) => (height, width),
        _ => (width, height),
    };
    limits.check_size(size.0, size.1)?;
    Ok(size)
}

/// The `w × h` rectangle at (`x`, `y`); the caller has checked it fits.
pub fn crop(src: &Image, x: u32, y: u32, w: u32, h: u32) -> Image {
    let mut out = Vec::with_capacity(w as usize * h as usize * 4);
    for row in y..y + h {
        let r = src.row(row as usize);
        out.extend_from_slice(&r[x as usize * 4..(x + w) as usize * 4]);
    }
    Image::new(w, h, out)
}

/// The image mirrored.
pub fn flip(src: &Image, axis: FlipAxis) -> Image {
    let (w, h) = (src.width(), src.height());
    let mut out = Vec::with_capacity(src.pixels().len());
    match axis {
        FlipAxis::Vertical => {
            for y in (0..h as usize).rev() {
                out.extend_from_slice(src.row(y));
            }
        }
        FlipAxis::Horizontal => {
            // Whole pixels, not bytes: one 4-byte move each.
            let px: &[[u8; 4]] = bytemuck::cast_slice(src.pixels());
            let mut flipped: Vec<[u8; 4]> = Vec::with_capacity(px.len());
            for row in px.chunks_exact(w as usize) {
                flipped.extend(row.iter().rev());
            }
            out = bytemuck::cast_vec(flipped);
        }
    }
    Image::new(w, h, out)
}

/// The image rotated clockwise.
pub fn rotate(src: &Image, rotation: Rotation) -> Image {
    let (w, h) = (src.width() as usize, src.height() as usize);
    let px: &[[u8; 4]] = bytemuck::cast_slice(src.pixels());
    match rotation {
        Rotation::Half => {
            let out: Vec<[u8; 4]> = px.iter().rev().copied().collect();
            Image::new(w as u32, h as u32, bytemuck::cast_vec(out))
        }
        Rotation::Quarter | Rotation::ThreeQuarters => {
            // Output is h wide and w tall. Walk the source in tiles so both
            // sides of the transpose stay in cache.
            const TILE: usize = 32;
            let mut out = vec![[0u8; 4]; w * h];
            for ty in (0..h).step_by(TILE) {
                for tx in (0..w).step_by(TILE) {
                    for y in ty..(ty + TILE).min(h) {
                        for x in tx..(tx + TILE).min(w) {
                            let (ox, oy) = match rotation {
                                Rotation::Quarter => (h - 1 - y, x),
                                _ => (y, w - 1 - x),
                            };
                            out[oy * h + ox] = px[y * w + x];
                        }
                    }
                }
            }
            Image::new(h as u32, w as u32, bytemuck::cast_vec(out))
        }
    }
}
