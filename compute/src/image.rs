//! Decoded images (RGBA, 8 bits per channel) and the codecs around them.
//!
//! Decoding reads the header first and refuses an image whose declared size
//! is over the pixel limit before allocating anything for it, so a small file
//! that claims to be enormous (a decompression bomb) costs nothing.

use std::io::Cursor;

use image::{ImageDecoder, ImageReader};
use wimpy_schema::job::Encoding;

use super::{ComputeError, Limits};

/// An RGBA8 image, rows top to bottom, no padding between rows.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}x{})", self.width, self.height)
    }
}

impl Image {
    /// An image over `pixels` (`width × height × 4` bytes).
    ///
    /// # Panics
    /// If the buffer has the wrong length.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Image {
        assert_eq!(pixels.len(), width as usize * height as usize * 4, "RGBA buffer of the wrong length");
        Image { width, height, pixels }
    }

    /// A `width × height` image of zeroes.
    pub fn zeroed(width: u32, height: u32) -> Image {
        Image::new(width, height, vec![0; width as usize * height as usize * 4])
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The RGBA bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The RGBA bytes, to write.
    pub fn pixels_mut(&mut self) -> &mut [u8] {
        &mut self.pixels
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width as usize * 4
    }

    /// One row's bytes.
    pub fn row(&self, y: usize) -> &[u8] {
        let s = self.stride();
        &self.pixels[y * s..(y + 1) * s]
    }

    /// Decodes PNG or JPEG `bytes` (format from the bytes), refusing
    /// anything over `limits` before decoding.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Image, ComputeError> {
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ComputeError::BadImage(e.to_string()))?;
        let format = reader.format().ok_or_else(|| ComputeError::BadImage("not a PNG or JPEG".into()))?;
        if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
            return Err(ComputeError::BadImage(format!("{format:?} is not supported (PNG and JPEG are)")));
        }
        let mut decoder = reader.into_decoder().map_err(|e| ComputeError::BadImage(e.to_string()))?;
        let (width, height) = decoder.dimensions();
        if width == 0 || height == 0 {
            return Err(ComputeError::EmptyImage { width, height });
        }
        limits.check_size(width, height)?;
        // The decoder allocates by the header too; bound it to what the header
        // was allowed to declare (16 bytes per pixel covers RGBA16).
        let mut codec_limits = image::Limits::default();
        codec_limits.max_alloc = Some(limits.max_pixels.saturating_mul(16).max(1 << 20));
        decoder.set_limits(codec_limits).map_err(|e| ComputeError::BadImage(e.to_string()))?;
        let decoded = image::DynamicImage::from_decoder(decoder).map_err(|e| ComputeError::BadImage(e.to_string()))?;
        let rgba = decoded.into_rgba8();
        Ok(Image::new(width, height, rgba.into_raw()))
    }

    /// Encodes the image.
    pub fn encode(&self, encoding: Encoding) -> Result<Vec<u8>, ComputeError> {
        let mut out = Vec::new();
        let err = |e: image::ImageError| ComputeError::Encode(e.to_string());
        match encoding {
            Encoding::Png => {
                use image::ImageEncoder;
                image::codecs::png::PngEncoder::new_with_quality(
                    &mut out,
                    image::codecs::png::CompressionType::Fast,
                    image::codecs::png::FilterType::Adaptive,
                )
                .write_image(&self.pixels, self.width, self.height, image::ExtendedColorType::Rgba8)
                .map_err(err)?;
            }
            Encoding::Jpeg { quality } => {
                // JPEG has no alpha channel.
                let rgb: Vec<u8> = self.pixels.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
                    .encode(&rgb, self.width, self.height, image::ExtendedColorType::Rgb8)
                    .map_err(err)?;
            }
        }
        Ok(out)
    }
}
