//! Shared by the compute tests: random images, the list of operations, the
//! backends to test.
#![allow(dead_code)]

use std::time::Duration;

use wimpy_compute::backend::cpu::CpuBackend;
use wimpy_compute::backend::simd::{Isa, SimdBackend};
use wimpy_compute::{Backend, ComputeError, Deadline, Image, Limits, StageTimes};
use wimpy_schema::job::{ConvKernel, FlipAxis, ImageOp, Op, ResizeFilter, Rotation};

/// A `w × h` image of random pixels with smooth regions mixed in, so blurs
/// and thresholds see both noise and gradients.
pub fn random_image(w: u32, h: u32, seed: u64) -> Image {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut pixels = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let r = next();
            if (x / 8 + y / 8) % 2 == 0 {
                pixels.extend_from_slice(&[(x * 7) as u8, (y * 5) as u8, (x + y) as u8, 255]);
            } else {
                pixels.extend_from_slice(&r.to_le_bytes()[..4]);
            }
        }
    }
    Image::new(w, h, pixels)
}

/// Every image operation, with parameters that fit a `w × h` image.
pub fn all_image_ops(w: u32, h: u32) -> Vec<ImageOp> {
    let mut ops = vec![
        ImageOp::Grayscale,
        ImageOp::Invert,
        ImageOp::BrightnessContrast { brightness: 30, contrast: 1.4 },
        ImageOp::BrightnessContrast { brightness: -80, contrast: 0.3 },
        ImageOp::Threshold(0),
        ImageOp::Threshold(128),
        ImageOp::Threshold(255),
        ImageOp::GaussianBlur { sigma: 0.8 },
        ImageOp::GaussianBlur { sigma: 2.0 },
        ImageOp::GaussianBlur { sigma: 5.5 },
        ImageOp::BoxBlur { radius: 1 },
        ImageOp::BoxBlur { radius: 7 },
        ImageOp::Sharpen { sigma: 1.0, amount: 1.0 },
        ImageOp::Sharpen { sigma: 2.5, amount: 4.0 },
        ImageOp::Sobel,
        ImageOp::Convolve(ConvKernel { size: 3, weights: vec![0.0, -1.0, 0.0, -1.0, 5.0, -1.0, 0.0, -1.0, 0.0] }),
        ImageOp::Convolve(ConvKernel {
            size: 3,
            weights: vec![1.0 / 16.0, 0.125, 0.0625, 0.125, 0.25, 0.125, 0.0625, 0.125, 0.0625],
        }),
        ImageOp::Convolve(ConvKernel {
            size: 5,
            weights: (0..25).map(|i| if i % 3 == 0 { -0.7 } else { 0.45 }).collect(),
        }),
        ImageOp::Convolve(ConvKernel { size: 5, weights: (0..25).map(|i| (i as f32 - 12.0) * 5.3).collect() }),
        ImageOp::Flip(FlipAxis::Horizontal),
        ImageOp::Flip(FlipAxis::Vertical),
        ImageOp::Rotate(Rotation::Quarter),
        ImageOp::Rotate(Rotation::Half),
        ImageOp::Rotate(Rotation::ThreeQuarters),
        ImageOp::Crop { x: w / 3, y: h / 4, width: (w - w / 3).max(1), height: (h - h / 4).max(1) },
    ];
    for filter in [ResizeFilter::Bilinear, ResizeFilter::Lanczos3] {
        for (nw, nh) in [(w * 2 + 1, h * 3), ((w / 2).max(1), (h / 3).max(1)), (w + 5, (h / 2).max(1)), (w, h + 1)] {
            ops.push(ImageOp::Resize { width: nw, height: nh, filter });
        }
    }
    ops
}

/// Every backend under test: SIMD on each instruction set this CPU has.
pub fn backends() -> Vec<Box<dyn Backend>> {
    Isa::available().into_iter().map(|isa| Box::new(SimdBackend::with_isa(isa)) as Box<dyn Backend>).collect()
}

/// Runs `ops` on a copy of `image`.
pub fn run_ops(backend: &mut dyn Backend, image: &Image, ops: &[ImageOp]) -> Image {
    backend
        .run_image(
            image.clone(),
            ops,
            &Limits::default(),
            &Deadline::after(Duration::from_secs(60)),
            &mut StageTimes::default(),
        )
        .unwrap_or_else(|e| panic!("{} on {ops:?}: {e}", backend.info().device))
}

/// The GPU backends, on Mesa in CI (llvmpipe for GLES, lavapipe for wgpu).
/// Failing to create one is a test failure: CI installs both stacks.
#[cfg(all(feature = "gles", feature = "wgpu"))]
pub fn gpu_backends() -> Vec<Box<dyn Backend>> {
    use wimpy_compute::backend::{gles::GlesBackend, wgpu::WgpuBackend};
    vec![
        Box::new(GlesBackend::new().unwrap_or_else(|e| panic!("GLES backend: {e}"))) as Box<dyn Backend>,
        Box::new(WgpuBackend::new().unwrap_or_else(|e| panic!("wgpu backend: {e}"))),
    ]
}

/// Runs `ops` on a copy of `image`, expecting a refusal.
pub fn refusal(
    backend: &mut dyn Backend,
    image: &Image,
    ops: &[ImageOp],
    limits: &Limits,
    deadline: &Deadline,
) -> ComputeError {
    match backend.run_image(image.clone(), ops, limits, deadline, &mut StageTimes::default()) {
        Ok(out) => {
            panic!("{}: {ops:?} gave a {}x{} image, not a refusal", backend.info().device, out.width(), out.height())
        }
        Err(e) => e,
    }
}

/// Image operations from their text forms (`blur:2`).
pub fn image_ops(text: &[&str]) -> Vec<ImageOp> {
    text.iter()
        .map(|s| match s.parse::<Op>() {
            Ok(Op::Image(op)) => op,
            other => panic!("{s} is not an image operation: {other:?}"),
        })
        .collect()
}

/// The largest per-channel difference between two images of the same size.
pub fn worst_difference(actual: &Image, expected: &Image) -> u8 {
    assert_eq!((actual.width(), actual.height()), (expected.width(), expected.height()), "the images differ in size");
    actual.pixels().iter().zip(expected.pixels()).map(|(a, e)| a.abs_diff(*e)).max().unwrap_or(0)
}

/// Every operation of [`all_image_ops`] on `image`, on `backend` and on the
/// scalar reference; fails where one differs by more than `tolerance` per
/// channel, and returns the worst difference seen.
pub fn compare_every_op(backend: &mut dyn Backend, image: &Image, tolerance: u8) -> u8 {
    let mut reference = CpuBackend::default();
    let (w, h) = (image.width(), image.height());
    let mut worst_seen = 0;
    for op in all_image_ops(w, h) {
        let ops = std::slice::from_ref(&op);
        let expected = run_ops(&mut reference, image, ops);
        let actual = run_ops(backend, image, ops);
        assert_eq!(
            (actual.width(), actual.height()),
            (expected.width(), expected.height()),
            "{}: {op:?} on {w}x{h}: wrong output size",
            backend.info().device
        );
        let worst = worst_difference(&actual, &expected);
        assert!(worst <= tolerance, "{}: {op:?} on {w}x{h} differs by {worst}", backend.info().device);
        worst_seen = worst_seen.max(worst);
    }
    worst_seen
}

/// A long pipeline (blurs, resizes both ways, geometry, point ops) run by
/// the scalar reference: `(input, ops, expected output)`, for comparing a
/// backend's whole-pipeline run, uploads and downloads included.
pub fn mixed_pipeline() -> (Image, Vec<ImageOp>, Image) {
    let image = random_image(123, 77, 7);
    let ops = image_ops(&[
        "grayscale",
        "blur:1.5",
        "sharpen:1:2",
        "resize:50:40",
        "rotate:90",
        "sobel",
        "invert",
        "box-blur:2",
        "crop:3:4:30:20",
        "flip:h",
        "resize:300:200:bilinear",
        "threshold:100",
    ]);
    let expected = run_ops(&mut CpuBackend::default(), &image, &ops);
    (image, ops, expected)
}
