//! The wgpu backend against the scalar `cpu` backend and the reference hash
//! crates. CI runs these on Mesa's lavapipe (software Vulkan), so a machine
//! without a Vulkan driver fails them rather than skipping: install
//! `mesa-vulkan-drivers libvulkan1`.

mod compute_common;

use std::time::Duration;

use compute_common::{
    all_image_ops, compare_every_op, mixed_pipeline, random_image, refusal, run_ops, worst_difference,
};
use sha2::Digest;
use wimpy_compute::backend::cpu::CpuBackend;
use wimpy_compute::backend::wgpu::WgpuBackend;
use wimpy_compute::{Backend, BackendKind, ComputeError, Deadline, Limits, StageTimes};
use wimpy_schema::job::{HashAlgo, HashOp, ImageOp, ResizeFilter};

/// Each test opens its own device: tests run on parallel threads, and a
/// backend belongs to the thread that made it.
fn later() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

fn backend() -> WgpuBackend {
    WgpuBackend::new().unwrap_or_else(|e| panic!("the wgpu backend must open on this machine: {e}"))
}

#[test]
fn every_image_op_matches_the_scalar_reference() {
    let mut backend = backend();
    let sizes = [(1, 1), (2, 3), (17, 9), (101, 37), (64, 1), (1, 50)];
    let mut worst = 0;
    for (i, &(w, h)) in sizes.iter().enumerate() {
        worst = worst.max(compare_every_op(&mut backend, &random_image(w, h, 2000 + i as u64), 1));
    }
    // Within the tolerance every GPU backend is held to (checked per op above);
    // the shaders compute the reference's integers, so in practice exact.
    eprintln!("{}: worst difference from the reference {worst}", backend.info().device);
}

#[test]
fn capped_dispatches_still_cover_every_pixel() {
    // Two workgroups per dimension cover 16x16 pixels per sweep; the kernels
    // must loop over the rest.
    let mut backend = backend().with_max_workgroups(2);
    let worst = compare_every_op(&mut backend, &random_image(45, 37, 11), 1);
    eprintln!("capped dispatches: worst difference from the reference {worst}");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 253) as u8).collect();
    assert_eq!(hash_once(&mut backend, HashAlgo::Blake3, &data), *blake3::hash(&data).as_bytes());
}

#[test]
fn pipelines_match_the_scalar_reference() {
    let (image, ops, expected) = mixed_pipeline();
    let mut backend = backend();
    let mut times = StageTimes::default();
    let actual = backend.run_image(image.clone(), &ops, &Limits::default(), &later(), &mut times).unwrap();
    let worst = worst_difference(&actual, &expected);
    assert!(worst <= 1, "the pipeline differs from the reference by {worst}");
    // One upload, one download, kernels in between, all timed.
    assert!(times.upload > Duration::ZERO && times.kernel > Duration::ZERO && times.download > Duration::ZERO);
}

#[test]
fn tiled_runs_equal_whole_runs() {
    let image = random_image(150, 130, 99);
    // 24 KiB holds 40 rows of the 150-pixel-wide input: enough for the
    // widest window (σ = 5.5 reaches 17 rows each way), and less than a
    // third of the image, so every op runs in several tiles.
    let limit = 24 * 1024;
    let mut tiled = backend().with_max_buffer_bytes(limit);
    assert_eq!(tiled.max_buffer_bytes(), limit);
    assert!(tiled.max_buffer_bytes() * 3 < image.pixels().len() as u64);
    let mut whole = backend();
    assert!(whole.max_buffer_bytes() > 4 * image.pixels().len() as u64, "the device limit is too small to compare");
    let mut reference = CpuBackend::default();
    for op in all_image_ops(image.width(), image.height()) {
        let ops = std::slice::from_ref(&op);
        let from_tiles = run_ops(&mut tiled, &image, ops);
        let from_whole = run_ops(&mut whole, &image, ops);
        assert_eq!(from_tiles, from_whole, "{op:?}: tiles differ from the whole image");
        let expected = run_ops(&mut reference, &image, ops);
        let worst = worst_difference(&from_tiles, &expected);
        assert!(worst <= 1, "{op:?}: tiles differ from the reference by {worst}");
    }
    // A pipeline that moves between tiled and whole-image ops.
    let ops = [
        ImageOp::Resize { width: 40, height: 30, filter: ResizeFilter::Lanczos3 },
        ImageOp::GaussianBlur { sigma: 1.2 },
        ImageOp::Resize { width: 200, height: 160, filter: ResizeFilter::Bilinear },
        ImageOp::Sobel,
    ];
    let (from_tiles, expected) = (run_ops(&mut tiled, &image, &ops), run_ops(&mut reference, &image, &ops));
    let worst = worst_difference(&from_tiles, &expected);
    assert!(worst <= 1, "a mixed tiled pipeline differs from the reference by {worst}");
}

#[test]
fn a_row_too_wide_for_the_buffer_limit_is_a_device_error() {
    // One output row of a 1000-pixel-wide blur needs 4000 bytes per row.
    let mut backend = backend().with_max_buffer_bytes(2048);
    let blur = [ImageOp::GaussianBlur { sigma: 1.0 }];
    let err = refusal(&mut backend, &random_image(1000, 4, 1), &blur, &Limits::default(), &later());
    assert!(matches!(err, ComputeError::Device { backend: BackendKind::Wgpu, .. }), "{err}");
}

#[test]
fn a_resize_too_long_for_software_vulkan_is_refused_not_wrong() {
    // 100000 -> 1 with Lanczos3 needs 600001 taps for the one output pixel,
    // past lavapipe's 65535 loop steps per invocation.
    let mut backend = backend();
    assert!(backend.info().software, "this test expects lavapipe");
    let shrink = [ImageOp::Resize { width: 1, height: 1, filter: ResizeFilter::Lanczos3 }];
    let err = refusal(&mut backend, &random_image(100_000, 1, 3), &shrink, &Limits::default(), &later());
    assert!(matches!(err, ComputeError::Device { backend: BackendKind::Wgpu, .. }), "{err}");
}

#[test]
fn limits_and_deadlines_are_enforced() {
    let mut backend = backend();
    let image = random_image(20, 10, 3);
    let run = |backend: &mut WgpuBackend, op: ImageOp, limits: Limits, deadline: Deadline| {
        backend.run_image(image.clone(), &[op], &limits, &deadline, &mut StageTimes::default())
    };
    let later = later();
    let crop = ImageOp::Crop { x: 15, y: 0, width: 10, height: 5 };
    assert!(matches!(run(&mut backend, crop, Limits::default(), later), Err(ComputeError::CropOutside { .. })));
    let small = Limits { max_pixels: 100, ..Limits::default() };
    let resize = ImageOp::Resize { width: 20, height: 20, filter: ResizeFilter::Bilinear };
    assert!(matches!(run(&mut backend, resize, small, later), Err(ComputeError::TooManyPixels { .. })));
    let passed = Deadline::after(Duration::ZERO);
    // Deadlines read the real clock; a moment's wait makes "passed" certain.
    std::thread::sleep(Duration::from_millis(2));
    assert!(matches!(
        run(&mut backend, ImageOp::Invert, Limits::default(), passed),
        Err(ComputeError::DeadlineExceeded { .. })
    ));
    let hashed =
        backend.hash(b"abc", HashOp { algo: HashAlgo::Sha256, rounds: 10 }, &passed, &mut StageTimes::default());
    assert!(matches!(hashed, Err(ComputeError::DeadlineExceeded { .. })));
}

fn hash_rounds(backend: &mut WgpuBackend, algo: HashAlgo, data: &[u8], rounds: u32) -> [u8; 32] {
    backend
        .hash(data, HashOp { algo, rounds }, &later(), &mut StageTimes::default())
        .unwrap_or_else(|e| panic!("{algo} of {} bytes x{rounds}: {e}", data.len()))
}

fn hash_once(backend: &mut WgpuBackend, algo: HashAlgo, data: &[u8]) -> [u8; 32] {
    hash_rounds(backend, algo, data, 1)
}

fn reference_hash(algo: HashAlgo, data: &[u8]) -> [u8; 32] {
    match algo {
        HashAlgo::Blake3 => *blake3::hash(data).as_bytes(),
        HashAlgo::Sha256 => sha2::Sha256::digest(data).into(),
    }
}

fn reference_rounds(algo: HashAlgo, data: &[u8], rounds: u32) -> [u8; 32] {
    let mut digest = reference_hash(algo, data);
    for _ in 1..rounds {
        digest = reference_hash(algo, &digest);
    }
    digest
}

fn test_data() -> Vec<u8> {
    (0..100_000usize).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn hashes_match_the_reference_crates_bit_for_bit() {
    let data = test_data();
    let mut backend = backend();
    // Lengths around block (64), chunk (1024) and tree (power-of-two chunk)
    // edges, and 100 000 bytes: more SHA-256 blocks than one invocation may
    // compress on lavapipe, which silently stops a shader after 65535 loop
    // iterations.
    let lengths = [0, 1, 55, 56, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 4097, 8193, 31_744, 40_000, 100_000];
    for algo in [HashAlgo::Blake3, HashAlgo::Sha256] {
        for len in lengths {
            let d = &data[..len];
            assert_eq!(hash_once(&mut backend, algo, d), reference_hash(algo, d), "{algo} of {len} bytes");
        }
        assert_eq!(hash_rounds(&mut backend, algo, &data[..100], 5), reference_rounds(algo, &data[..100], 5));
        // More rounds than one dispatch runs.
        assert_eq!(hash_rounds(&mut backend, algo, b"", 5000), reference_rounds(algo, b"", 5000), "{algo} x5000");
    }
}

#[test]
fn hashes_of_messages_larger_than_a_buffer_are_exact() {
    let data = test_data();
    // 4 KiB slices: ten of them for 40 000 bytes, for either hash.
    let mut backend = backend().with_max_buffer_bytes(4096);
    for algo in [HashAlgo::Blake3, HashAlgo::Sha256] {
        for len in [4095, 4096, 4097, 12_345, 40_000] {
            let d = &data[..len];
            assert_eq!(hash_once(&mut backend, algo, d), reference_hash(algo, d), "{algo} of {len} bytes in slices");
        }
        assert_eq!(hash_rounds(&mut backend, algo, &data, 3), reference_rounds(algo, &data, 3));
    }
}

#[test]
fn published_test_vectors() {
    let mut backend = backend();
    let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        hex(hash_once(&mut backend, HashAlgo::Sha256, b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(hash_once(&mut backend, HashAlgo::Blake3, b"")),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
}

#[test]
fn info_names_the_adapter_and_flags_software() {
    let backend = backend();
    let info = backend.info();
    assert_eq!(info.kind, BackendKind::Wgpu);
    assert!(info.device.contains("vulkan") || info.device.contains("Vulkan"), "{}", info.device);
    // Mesa's software Vulkan (lavapipe) names its adapter llvmpipe.
    if info.device.contains("llvmpipe") {
        assert!(info.software, "{} runs in software", info.device);
    }
}
