//! Every operation on every backend this machine has, against the scalar
//! `cpu` backend, on random images of odd sizes. SIMD computes the same
//! integers as the reference, so it must agree exactly.

mod compute_common;

use compute_common::{backends, compare_every_op, image_ops, random_image, run_ops, worst_difference};
use wimpy_compute::backend::cpu::CpuBackend;
use wimpy_compute::{Backend, Deadline, StageTimes};
use wimpy_schema::job::{HashAlgo, HashOp};

#[test]
fn every_image_op_matches_the_scalar_reference() {
    let sizes = [(1, 1), (2, 3), (17, 9), (33, 64), (101, 37), (64, 1), (1, 50)];
    for mut backend in backends() {
        for (i, &(w, h)) in sizes.iter().enumerate() {
            compare_every_op(backend.as_mut(), &random_image(w, h, 1000 + i as u64), 0);
        }
    }
}

#[test]
fn pipelines_match_the_scalar_reference() {
    let image = random_image(123, 77, 7);
    let ops = image_ops(&["grayscale", "blur:1.5", "sharpen:1:2", "resize:50:40", "rotate:90", "sobel", "invert"]);
    let expected = run_ops(&mut CpuBackend::default(), &image, &ops);
    for mut backend in backends() {
        let worst = worst_difference(&run_ops(backend.as_mut(), &image, &ops), &expected);
        assert!(worst <= 1, "{}: pipeline differs by {worst}", backend.info().device);
    }
}

#[test]
fn hashes_match_the_reference_crates_bit_for_bit() {
    use sha2::Digest;
    let mut data = vec![0u8; 40_000];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    // Lengths around block (64), chunk (1024) and tree (power-of-two chunk) edges.
    let lengths = [0, 1, 55, 56, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 4097, 8193, 31_744, 40_000];
    for mut backend in backends().into_iter().chain([Box::new(CpuBackend::default()) as _]) {
        for &len in &lengths {
            let d = &data[..len];
            for (algo, expect) in [
                (HashAlgo::Blake3, *blake3::hash(d).as_bytes()),
                (HashAlgo::Sha256, <[u8; 32]>::from(sha2::Sha256::digest(d))),
            ] {
                let got = backend
                    .hash(
                        d,
                        HashOp { algo, rounds: 1 },
                        &Deadline::after(std::time::Duration::from_secs(60)),
                        &mut StageTimes::default(),
                    )
                    .unwrap();
                assert_eq!(got, expect, "{} {algo} of {len} bytes", backend.info().device);
            }
        }
        // Rounds: hash of the hash.
        for algo in [HashAlgo::Blake3, HashAlgo::Sha256] {
            let mut expect = [0u8; 32];
            for round in 0..5 {
                let input: &[u8] = if round == 0 { &data[..100] } else { &expect };
                expect = match algo {
                    HashAlgo::Blake3 => *blake3::hash(input).as_bytes(),
                    HashAlgo::Sha256 => sha2::Sha256::digest(input).into(),
                };
            }
            let got = backend
                .hash(
                    &data[..100],
                    HashOp { algo, rounds: 5 },
                    &Deadline::after(std::time::Duration::from_secs(60)),
                    &mut StageTimes::default(),
                )
                .unwrap();
            assert_eq!(got, expect, "{} {algo} x5", backend.info().device);
        }
    }
}

#[test]
fn published_test_vectors() {
    let mut cpu = CpuBackend::default();
    let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut run = |algo, data: &[u8]| {
        hex(cpu
            .hash(
                data,
                HashOp { algo, rounds: 1 },
                &Deadline::after(std::time::Duration::from_secs(5)),
                &mut StageTimes::default(),
            )
            .unwrap())
    };
    assert_eq!(run(HashAlgo::Sha256, b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(run(HashAlgo::Sha256, b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(run(HashAlgo::Blake3, b""), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
}
