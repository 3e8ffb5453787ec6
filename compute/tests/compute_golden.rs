//! Golden outputs: a few small images (generated scenes with edges, smooth
//! gradients and fine texture, one stored as JPEG) and what each operation
//! makes of them, kept in testdata/compute. Any change in any backend's
//! output shows here, the GPU backends' (on Mesa) included. `WIMPY_BLESS=1 cargo test --test compute_golden`
//! rewrites the goldens after a deliberate change.

mod compute_common;

use std::path::{Path, PathBuf};

use compute_common::{backends, gpu_backends, worst_difference};
use wimpy_compute::backend::cpu::CpuBackend;
use wimpy_compute::{Backend, Deadline, Image, Limits, execute};
use wimpy_schema::job::{Encoding, Job, Op};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/compute")
}

fn bless() -> bool {
    std::env::var_os("WIMPY_BLESS").is_some()
}

/// A 160 × 120 scene: sky gradient, a sun disc, hills, and a noisy field.
fn scene(seed: u32) -> Image {
    let (w, h) = (160u32, 120u32);
    let mut px = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let hill = 70.0 + 12.0 * ((fx + seed as f32 * 13.0) / 17.0).sin();
            let sun = ((fx - 40.0 - seed as f32 * 30.0).powi(2) + (fy - 30.0).powi(2)).sqrt() < 14.0;
            let noise = (x.wrapping_mul(374_761_393) ^ y.wrapping_mul(668_265_263) ^ seed.wrapping_mul(2_246_822_519))
                .wrapping_mul(1_274_126_177)
                >> 24;
            let p = if sun {
                [250, 220, 90]
            } else if fy < hill {
                [(90.0 + fy) as u8, (140.0 + fy * 0.5) as u8, 230]
            } else {
                [(40 + noise / 4) as u8, (110 + noise / 3) as u8, (30 + noise / 8) as u8]
            };
            px.extend_from_slice(&[p[0], p[1], p[2], 255]);
        }
    }
    Image::new(w, h, px)
}

/// The inputs, created on first bless.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let files = [
        ("scene-a.png", 0, Encoding::Png),
        ("scene-b.png", 1, Encoding::Png),
        ("scene-c.jpg", 2, Encoding::Jpeg { quality: 88 }),
    ];
    files
        .into_iter()
        .map(|(name, seed, encoding)| {
            let path = dir().join(name);
            if bless() && !path.exists() {
                std::fs::create_dir_all(dir()).unwrap();
                std::fs::write(&path, scene(seed).encode(encoding).unwrap()).unwrap();
            }
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name.to_string(), bytes)
        })
        .collect()
}

const JOBS: &[(&str, &[&str])] = &[
    ("grayscale", &["grayscale"]),
    ("invert", &["invert"]),
    ("brightness", &["brightness:25:1.3"]),
    ("threshold", &["threshold:120"]),
    ("blur", &["blur:2"]),
    ("box-blur", &["box-blur:3"]),
    ("sharpen", &["sharpen:1.2:1.5"]),
    ("sobel", &["sobel"]),
    ("conv3", &["conv3:-1,-1,-1,-1,8,-1,-1,-1,-1"]),
    ("conv5", &["conv5:1,4,6,4,1,4,16,24,16,4,6,24,36,24,6,4,16,24,16,4,1,4,6,4,1/256"]),
    ("resize-bilinear", &["resize:97:53:bilinear"]),
    ("resize-lanczos3", &["resize:211:173:lanczos3"]),
    ("crop", &["crop:20:10:90:70"]),
    ("flip", &["flip:h", "flip:v"]),
    ("rotate", &["rotate:90"]),
];

/// The decoded pixels of a job's PNG output.
fn pixels_of(png: &[u8]) -> Image {
    Image::decode(png, &Limits::default()).unwrap()
}

fn run(backend: &mut dyn Backend, job: &Job, input: &[u8]) -> Vec<u8> {
    let deadline = Deadline::after(std::time::Duration::from_secs(60));
    execute(backend, job, input.to_vec(), &Limits::default(), &deadline).unwrap().bytes
}

#[test]
fn every_backend_reproduces_the_goldens() {
    let mut reference = CpuBackend::default();
    let mut others = backends();
    others.extend(gpu_backends());
    for (name, input) in inputs() {
        let stem = name.split('.').next().unwrap_or(&name);
        for (label, ops) in JOBS {
            let job = Job::parse(ops).unwrap();
            assert_eq!(job.ops().last(), Some(&Op::Encode(Encoding::Png)));
            let golden_path = dir().join("golden").join(format!("{stem}-{label}.png"));
            let produced = run(&mut reference, &job, &input);
            if bless() {
                std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
                std::fs::write(&golden_path, &produced).unwrap();
            }
            let golden =
                pixels_of(&std::fs::read(&golden_path).unwrap_or_else(|e| panic!("{}: {e}", golden_path.display())));
            assert!(pixels_of(&produced) == golden, "cpu changed its output for {stem} {label}");
            for backend in &mut others {
                let got = pixels_of(&run(backend.as_mut(), &job, &input));
                let worst = worst_difference(&got, &golden);
                assert!(worst <= 1, "{}: {stem} {label} differs from the golden by {worst}", backend.info().device);
            }
        }
    }
}

#[test]
fn hash_vectors_hold() {
    // testdata/compute/hashes.txt: ALGO ROUNDS INPUT-FILE HEX, one per line.
    let path = dir().join("hashes.txt");
    let inputs = inputs();
    if bless() {
        let mut lines = String::new();
        for (name, bytes) in &inputs {
            for (algo, rounds) in [("blake3", 1), ("sha256", 1), ("blake3", 1000), ("sha256", 1000)] {
                let job = Job::parse(&[format!("{algo}:{rounds}")]).unwrap();
                let digest = run(&mut CpuBackend::default(), &job, bytes);
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                lines.push_str(&format!("{algo} {rounds} {name} {hex}\n"));
            }
        }
        std::fs::write(&path, lines).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let mut all: Vec<Box<dyn Backend>> = backends();
    all.extend(gpu_backends());
    all.push(Box::new(CpuBackend::default()));
    let mut checked = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (algo, rounds, file, hex) = (f[0], f[1], f[2], f[3]);
        let input = &inputs.iter().find(|(n, _)| n == file).unwrap().1;
        let job = Job::parse(&[format!("{algo}:{rounds}")]).unwrap();
        for backend in &mut all {
            let digest = run(backend.as_mut(), &job, input);
            let got: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, hex, "{} {line}", backend.info().device);
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
}
