//! The shader programs and the files they are made of.
//!
//! GLSL ES has no `#include`, so a fragment shader is joined from parts:
//! `prelude.glsl` (the `#version` line and precisions), the constants the
//! Rust definitions own (as `#define`s, so shaders and [`kernels`] cannot
//! drift apart), the shared helpers the program needs, and its own `.frag`.

use crate::kernels;

macro_rules! shader {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../shaders/gles/", $name))
    };
}

const PRELUDE: &str = shader!("prelude.glsl");
const FULLSCREEN_VERT: &str = shader!("fullscreen.vert");
const IMAGE_COMMON: &str = shader!("image_common.glsl");
const BLAKE3_COMMON: &str = shader!("blake3_common.glsl");
const SHA256_COMMON: &str = shader!("sha256_common.glsl");

/// Every program the backend draws with. Each is compiled the first time it
/// is used and cached for the life of the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum ProgramId {
    Grayscale,
    Invert,
    BrightnessContrast,
    Threshold,
    GaussianPass,
    BoxPass,
    Unsharp,
    Sobel,
    Convolve,
    ResizePass,
    Remap,
    Blake3Chunks,
    Blake3Parents,
    Blake3Rounds,
    Sha256Blocks,
    Sha256Rounds,
}

impl ProgramId {
    /// The shared helpers and the program's own file.
    fn fragment_parts(self) -> [&'static str; 2] {
        match self {
            ProgramId::Grayscale => [IMAGE_COMMON, shader!("grayscale.frag")],
            ProgramId::Invert => [IMAGE_COMMON, shader!("invert.frag")],
            ProgramId::BrightnessContrast => [IMAGE_COMMON, shader!("brightness_contrast.frag")],
            ProgramId::Threshold => [IMAGE_COMMON, shader!("threshold.frag")],
            ProgramId::GaussianPass => [IMAGE_COMMON, shader!("gaussian_pass.frag")],
            ProgramId::BoxPass => [IMAGE_COMMON, shader!("box_pass.frag")],
            ProgramId::Unsharp => [IMAGE_COMMON, shader!("unsharp.frag")],
            ProgramId::Sobel => [IMAGE_COMMON, shader!("sobel.frag")],
            ProgramId::Convolve => [IMAGE_COMMON, shader!("convolve.frag")],
            ProgramId::ResizePass => [IMAGE_COMMON, shader!("resize_pass.frag")],
            ProgramId::Remap => [IMAGE_COMMON, shader!("remap.frag")],
            ProgramId::Blake3Chunks => [BLAKE3_COMMON, shader!("blake3_chunks.frag")],
            ProgramId::Blake3Parents => [BLAKE3_COMMON, shader!("blake3_parents.frag")],
            ProgramId::Blake3Rounds => [BLAKE3_COMMON, shader!("blake3_rounds.frag")],
            ProgramId::Sha256Blocks => [SHA256_COMMON, shader!("sha256_blocks.frag")],
            ProgramId::Sha256Rounds => [SHA256_COMMON, shader!("sha256_rounds.frag")],
        }
    }

    /// The full fragment shader source.
    pub fn fragment_source(self) -> String {
        let mut source = String::from(PRELUDE);
        source.push_str(&format!(
            "#define BLUR_SHIFT {}\n#define CONV_SHIFT {}\n",
            kernels::BLUR_SHIFT,
            kernels::CONV_SHIFT
        ));
        for part in self.fragment_parts() {
            source.push_str(part);
        }
        source
    }

    /// The vertex shader every program shares.
    pub fn vertex_source() -> String {
        format!("{PRELUDE}{FULLSCREEN_VERT}")
    }
}
