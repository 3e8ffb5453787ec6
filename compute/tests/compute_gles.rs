//! The OpenGL ES backend against the scalar `cpu` backend and the reference
//! hash crates. CI has Mesa (libegl1 libegl-mesa0 libgles2), whose llvmpipe
//! gives OpenGL ES 3.2 through EGL surfaceless: these tests fail, never skip,
//! when the backend cannot be created.

mod compute_common;

use std::time::Duration;

use compute_common::{
    all_image_ops, compare_every_op, image_ops, mixed_pipeline, random_image, refusal, run_ops, worst_difference,
};
use sha2::Digest;
use wimpy_compute::backend::cpu::CpuBackend;
use wimpy_compute::backend::gles::GlesBackend;
use wimpy_compute::{Backend, BackendKind, ComputeError, Deadline, Limits, StageTimes};
use wimpy_schema::job::{HashAlgo, HashOp, ImageOp};

fn gles() -> GlesBackend {
    GlesBackend::new().unwrap_or_else(|e| panic!("the gles backend must be available (install Mesa's EGL): {e}"))
}

fn later() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

fn gles_tiled(max: u32) -> GlesBackend {
    let backend = GlesBackend::with_max_texture_size(max)
        .unwrap_or_else(|e| panic!("the gles backend must be available (install Mesa's EGL): {e}"));
    assert_eq!(backend.max_texture_size(), max);
    backend
}

/// Every operation over images of `sizes`, against the reference (exact:
/// the shaders compute the reference's integers); the worst difference.
fn compare_sizes(backend: &mut GlesBackend, sizes: &[(u32, u32)], seed: u64) -> u8 {
    let mut worst = 0;
    for (i, &(w, h)) in sizes.iter().enumerate() {
        worst = worst.max(compare_every_op(backend, &random_image(w, h, seed + i as u64), 0));
    }
    worst
}

#[test]
fn every_image_op_matches_the_scalar_reference() {
    let mut backend = gles();
    let sizes = [(1, 1), (2, 3), (17, 9), (101, 37), (64, 1), (1, 50), (33, 64)];
    let worst = compare_sizes(&mut backend, &sizes, 1000);
    // The shaders compute the reference's integers, so nothing should differ at all.
    assert_eq!(worst, 0, "{}: worst difference {worst}", backend.info().device);
}

#[test]
fn tiled_runs_equal_the_reference_for_every_op() {
    // 64-pixel tiles on a 150x130 image: every operation crosses tile edges,
    // and the larger resizes need tiles for input and output.
    let mut backend = gles_tiled(64);
    let worst = compare_sizes(&mut backend, &[(150, 130), (129, 3)], 2000);
    assert_eq!(worst, 0, "tiled: worst difference {worst}");
}

#[test]
fn tiled_runs_equal_untiled_runs() {
    let mut untiled = gles();
    let image = random_image(150, 130, 77);
    for max in [24, 64] {
        let mut tiled = gles_tiled(max);
        for op in all_image_ops(150, 130) {
            // A Gaussian of σ 5.5 reads 17 pixels each side: more than a
            // 24-pixel tile can hold.
            if max == 24 && matches!(op, ImageOp::GaussianBlur { sigma } if sigma > 5.0) {
                continue;
            }
            let ops = std::slice::from_ref(&op);
            let whole = run_ops(&mut untiled, &image, ops);
            let tiles = run_ops(&mut tiled, &image, ops);
            assert_eq!(worst_difference(&tiles, &whole), 0, "{op:?} in {max}-pixel tiles");
        }
    }
}

#[test]
fn a_kernel_wider_than_a_tile_is_refused_not_wrong() {
    let mut backend = gles_tiled(16);
    let image = random_image(40, 40, 3);
    let err = refusal(&mut backend, &image, &[ImageOp::GaussianBlur { sigma: 5.5 }], &Limits::default(), &later());
    assert!(matches!(err, ComputeError::Device { backend: BackendKind::Gles, .. }), "{err}");
}

#[test]
fn pipelines_match_the_scalar_reference() {
    let (image, ops, expected) = mixed_pipeline();
    for mut backend in [gles(), gles_tiled(64)] {
        let mut times = StageTimes::default();
        let actual = backend.run_image(image.clone(), &ops, &Limits::default(), &later(), &mut times).unwrap();
        let worst = worst_difference(&actual, &expected);
        assert_eq!(worst, 0, "pipeline in {}-pixel textures", backend.max_texture_size());
        assert!(times.upload > Duration::ZERO && times.kernel > Duration::ZERO && times.download > Duration::ZERO);
    }
}

#[test]
fn limits_and_deadlines_are_enforced() {
    let mut backend = gles();
    let image = random_image(20, 20, 5);
    let small = Limits { max_pixels: 500, ..Limits::default() };
    let err = refusal(&mut backend, &image, &image_ops(&["resize:100:100"]), &small, &later());
    assert!(matches!(err, ComputeError::TooManyPixels { .. }), "{err}");
    let err = refusal(&mut backend, &image, &image_ops(&["crop:10:10:20:20"]), &Limits::default(), &later());
    assert!(matches!(err, ComputeError::CropOutside { .. }), "{err}");
    let passed = Deadline::after(Duration::ZERO);
    let err = refusal(&mut backend, &image, &image_ops(&["blur:1"]), &Limits::default(), &passed);
    assert!(matches!(err, ComputeError::DeadlineExceeded { .. }), "{err}");
    // The backend is still usable after refusals.
    let out = run_ops(&mut backend, &image, &image_ops(&["invert"]));
    assert_eq!(out, run_ops(&mut CpuBackend::default(), &image, &image_ops(&["invert"])));
}

fn hash_with(backend: &mut GlesBackend, data: &[u8], algo: HashAlgo, rounds: u32) -> [u8; 32] {
    backend
        .hash(data, HashOp { algo, rounds }, &later(), &mut StageTimes::default())
        .unwrap_or_else(|e| panic!("{algo} of {} bytes x{rounds}: {e}", data.len()))
}

#[test]
fn hashes_match_the_reference_crates_bit_for_bit() {
    let mut backend = gles();
    let data: Vec<u8> = (0..40_000usize).map(|i| (i * 31 % 251) as u8).collect();
    // Lengths around block (64), chunk (1024) and tree (power-of-two chunk) edges.
    let lengths = [0, 1, 55, 56, 63, 64, 65, 119, 120, 1023, 1024, 1025, 2048, 2049, 3072, 4097, 8193, 31_744, 40_000];
    for &len in &lengths {
        let d = &data[..len];
        assert_eq!(
            hash_with(&mut backend, d, HashAlgo::Blake3, 1),
            *blake3::hash(d).as_bytes(),
            "blake3 of {len} bytes"
        );
        assert_eq!(
            hash_with(&mut backend, d, HashAlgo::Sha256, 1),
            <[u8; 32]>::from(sha2::Sha256::digest(d)),
            "sha256 of {len} bytes"
        );
    }
}

#[test]
fn large_inputs_span_several_draws() {
    // Past one draw's batch for both hashes (8 MiB of BLAKE3 chunks, 64 KiB
    // of SHA-256 blocks), with a partial last chunk.
    let mut backend = gles();
    let data: Vec<u8> = (0..(9 << 20) + 777usize).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_eq!(hash_with(&mut backend, &data, HashAlgo::Blake3, 1), *blake3::hash(&data).as_bytes());
    let d = &data[..200_000];
    assert_eq!(hash_with(&mut backend, d, HashAlgo::Sha256, 1), <[u8; 32]>::from(sha2::Sha256::digest(d)));
}

#[test]
fn hash_rounds_hash_the_previous_digest() {
    let mut backend = gles();
    let data: Vec<u8> = (0..3000usize).map(|i| (i * 7 % 256) as u8).collect();
    for len in [0, 100, 3000] {
        for rounds in [2, 5, 4097] {
            let input = &data[..len];
            let mut blake = *blake3::hash(input).as_bytes();
            let mut sha: [u8; 32] = sha2::Sha256::digest(input).into();
            for _ in 1..rounds {
                blake = *blake3::hash(&blake).as_bytes();
                sha = sha2::Sha256::digest(sha).into();
            }
            assert_eq!(hash_with(&mut backend, input, HashAlgo::Blake3, rounds), blake, "blake3 {len} bytes x{rounds}");
            assert_eq!(hash_with(&mut backend, input, HashAlgo::Sha256, rounds), sha, "sha256 {len} bytes x{rounds}");
        }
    }
}

#[test]
fn hashes_check_the_deadline() {
    let mut backend = gles();
    let err = backend
        .hash(
            b"abc",
            HashOp { algo: HashAlgo::Sha256, rounds: 10 },
            &Deadline::after(Duration::ZERO),
            &mut StageTimes::default(),
        )
        .unwrap_err();
    assert!(matches!(err, ComputeError::DeadlineExceeded { .. }), "{err}");
}

#[test]
fn llvmpipe_is_reported_as_software() {
    let backend = gles();
    let info = backend.info();
    assert_eq!(info.kind, BackendKind::Gles);
    assert!(info.device.contains("OpenGL ES"), "{}", info.device);
    let device = info.device.to_lowercase();
    let software_renderer = ["llvmpipe", "softpipe", "swrast"].iter().any(|r| device.contains(r));
    assert_eq!(info.software, software_renderer, "{}", info.device);
}

#[test]
fn backends_on_two_threads_work_at_once() {
    let threads: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                let mut backend = gles();
                let image = random_image(40, 30, 50 + t);
                let ops = image_ops(&["blur:2", "sobel"]);
                for _ in 0..3 {
                    let expected = run_ops(&mut CpuBackend::default(), &image, &ops);
                    assert_eq!(run_ops(&mut backend, &image, &ops), expected);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn two_backends_on_one_thread_keep_their_own_contexts() {
    let mut first = gles();
    let mut second = gles_tiled(32);
    let image = random_image(50, 50, 9);
    let ops = image_ops(&["blur:1", "rotate:270"]);
    let expected = run_ops(&mut CpuBackend::default(), &image, &ops);
    for _ in 0..2 {
        assert_eq!(run_ops(&mut first, &image, &ops), expected);
        assert_eq!(run_ops(&mut second, &image, &ops), expected);
    }
    drop(first);
    assert_eq!(run_ops(&mut second, &image, &ops), expected);
}
