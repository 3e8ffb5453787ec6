//! Compute throughput: megapixels per second for every operation on every
//! backend this machine has, on one 3840 × 2160 image, beside the `image`
//! crate's imageops and fast_image_resize on the same image in the same run;
//! hash throughput beside the blake3 and sha2 crates.
//!
//! `cargo bench -p wimpy-worker --bench compute [-- --quick | --runs N] [--backends cpu,simd]`
//! prints a Markdown table. One thread throughout. GPU backends on Mesa
//! (llvmpipe, lavapipe) run on the CPU: their figures are not GPU speeds.

use std::time::{Duration, Instant};

use wimpy_compute::{Backend, BackendKind, Deadline, Image, Limits, StageTimes};
use wimpy_schema::job::{HashAlgo, HashOp, ImageOp, Op};

const W: u32 = 3840;
const H: u32 = 2160;

/// A 4K test image: gradients, hard edges and noise, like a photo's mix.
fn photo() -> Image {
    let mut px = Vec::with_capacity((W * H * 4) as usize);
    for y in 0..H {
        for x in 0..W {
            let n = (x.wrapping_mul(374_761_393) ^ y.wrapping_mul(668_265_263)).wrapping_mul(1_274_126_177) >> 24;
            let edge = ((x / 240) + (y / 240)) % 2 == 0;
            let base = if edge { (x / 16) as u8 } else { 255 - (y / 9) as u8 };
            px.extend_from_slice(&[base.wrapping_add((n / 8) as u8), (x ^ y) as u8 / 2 + 64, (n as u8) / 2 + 32, 255]);
        }
    }
    Image::new(W, H, px)
}

fn ops() -> Vec<(&'static str, ImageOp)> {
    let parse = |s: &str| match s.parse::<Op>().unwrap() {
        Op::Image(op) => op,
        _ => unreachable!(),
    };
    [
        ("grayscale", "grayscale"),
        ("invert", "invert"),
        ("brightness/contrast", "brightness:20:1.3"),
        ("threshold", "threshold:128"),
        ("gaussian blur σ2", "blur:2"),
        ("box blur r3", "box-blur:3"),
        ("sharpen σ1", "sharpen:1:1"),
        ("sobel", "sobel"),
        ("conv 3x3", "conv3:0,-1,0,-1,5,-1,0,-1,0"),
        ("conv 5x5", "conv5:1,4,6,4,1,4,16,24,16,4,6,24,36,24,6,4,16,24,16,4,1,4,6,4,1/256"),
        ("resize bilinear ½", "resize:1920:1080:bilinear"),
        ("resize Lanczos3 ½", "resize:1920:1080:lanczos3"),
        ("crop ½", "crop:960:540:1920:1080"),
        ("flip h", "flip:h"),
        ("rotate 90", "rotate:90"),
    ]
    .into_iter()
    .map(|(name, text)| (name, parse(text)))
    .collect()
}

/// The best of `runs` timings of `f`.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.expect("at least one run"))
}

fn mps(d: Duration) -> f64 {
    f64::from(W) * f64::from(H) / 1e6 / d.as_secs_f64()
}

fn create(kind: BackendKind) -> Result<Box<dyn Backend>, String> {
    use wimpy_compute::backend::{cpu, gles, simd, wgpu};
    Ok(match kind {
        BackendKind::Cpu => Box::new(cpu::CpuBackend::default()),
        BackendKind::Simd => Box::new(simd::SimdBackend::new()),
        BackendKind::Gles => Box::new(gles::GlesBackend::new().map_err(|e| e.to_string())?),
        BackendKind::Wgpu => Box::new(wgpu::WgpuBackend::new().map_err(|e| e.to_string())?),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs = match args.iter().position(|a| a == "--runs") {
        Some(i) => args[i + 1].parse().expect("--runs N"),
        None if quick => 1,
        None => 3,
    };
    let kinds: Vec<BackendKind> = match args.iter().position(|a| a == "--backends") {
        Some(i) => args[i + 1].split(',').map(|k| k.parse().unwrap()).collect(),
        None => vec![BackendKind::Cpu, BackendKind::Simd, BackendKind::Gles, BackendKind::Wgpu],
    };
    let image = photo();
    if let Some(i) = args.iter().position(|a| a == "--write-photo") {
        // For peers in other processes (libvips): the same pixels, raw RGBA.
        std::fs::write(&args[i + 1], image.pixels()).expect("writing the photo");
    }
    let limits = Limits::default();
    let mut backends = Vec::new();
    for kind in kinds {
        match create(kind) {
            Ok(b) => {
                let software = if b.info().software { ", software: not a GPU speed" } else { "" };
                println!("- {kind}: {}{software}", b.info().device);
                backends.push(b);
            }
            Err(e) => println!("- {kind}: unavailable ({e})"),
        }
    }
    println!();
    println!("Megapixels per second on one {W}x{H} RGBA image, best of {runs}, one thread.");
    println!("GPU columns: kernel-only MP/s, then upload + download ms.\n");
    let mut header = String::from("| op |");
    let mut rule = String::from("|---|");
    for b in &backends {
        header.push_str(&format!(" {} |", b.info().kind));
        rule.push_str("---:|");
    }
    header.push_str(" image crate | fast_image_resize |");
    rule.push_str("---:|---:|");
    println!("{header}\n{rule}");
    let rgba = image::RgbaImage::from_raw(W, H, image.pixels().to_vec()).unwrap();
    for (name, op) in ops() {
        let mut row = format!("| {name} |");
        for b in &mut backends {
            let gpu = matches!(b.info().kind, BackendKind::Gles | BackendKind::Wgpu);
            let mut times = StageTimes::default();
            let (_, _) = best(runs, || {
                times = StageTimes::default();
                b.run_image(
                    image.clone(),
                    std::slice::from_ref(&op),
                    &limits,
                    &Deadline::after(Duration::from_secs(600)),
                    &mut times,
                )
                .unwrap()
            });
            if gpu {
                let transfer = (times.upload + times.download).as_secs_f64() * 1e3;
                row.push_str(&format!(" {:.0} (+{transfer:.0} ms) |", mps(times.kernel)));
            } else {
                row.push_str(&format!(" {:.0} |", mps(times.kernel)));
            }
        }
        row.push_str(&match peer_image_crate(name, &rgba, runs) {
            Some(d) => format!(" {:.0} |", mps(d)),
            None => " - |".into(),
        });
        row.push_str(&match peer_fir(name, &image, runs) {
            Some(d) => format!(" {:.0} |", mps(d)),
            None => " - |".into(),
        });
        println!("{row}");
    }

    let data: Vec<u8> = (0..(64u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    println!("\nHash throughput on 64 MiB, GB/s (one thread; the crates may use SIMD and SHA extensions).\n");
    let mut header = String::from("| hash |");
    let mut rule = String::from("|---|");
    for b in &backends {
        header.push_str(&format!(" {} |", b.info().kind));
        rule.push_str("---:|");
    }
    println!("{header} crate |\n{rule}---:|");
    for algo in [HashAlgo::Blake3, HashAlgo::Sha256] {
        let mut row = format!("| {algo} |");
        for b in &mut backends {
            let (d, _) = best(runs, || {
                b.hash(
                    &data,
                    HashOp { algo, rounds: 1 },
                    &Deadline::after(Duration::from_secs(600)),
                    &mut StageTimes::default(),
                )
                .unwrap()
            });
            row.push_str(&format!(" {:.2} |", data.len() as f64 / 1e9 / d.as_secs_f64()));
        }
        let (d, _) = best(runs, || match algo {
            HashAlgo::Blake3 => *blake3::hash(&data).as_bytes(),
            HashAlgo::Sha256 => {
                use sha2::Digest;
                sha2::Sha256::digest(&data).into()
            }
        });
        row.push_str(&format!(" {:.2} |", data.len() as f64 / 1e9 / d.as_secs_f64()));
        println!("{row}");
    }
}

/// The `image` crate's nearest equivalent, where it has one.
fn peer_image_crate(name: &str, img: &image::RgbaImage, runs: usize) -> Option<Duration> {
    use image::imageops;
    let d = match name {
        "grayscale" => best(runs, || imageops::grayscale(img)).0,
        "invert" => {
            best(runs, || {
                let mut c = img.clone();
                imageops::invert(&mut c);
                c
            })
            .0
        }
        "brightness/contrast" => best(runs, || imageops::contrast(&imageops::brighten(img, 20), 30.0)).0,
        "gaussian blur σ2" => best(runs, || imageops::blur(img, 2.0)).0,
        "sharpen σ1" => best(runs, || imageops::unsharpen(img, 1.0, 0)).0,
        "conv 3x3" => best(runs, || imageops::filter3x3(img, &[0.0, -1.0, 0.0, -1.0, 5.0, -1.0, 0.0, -1.0, 0.0])).0,
        "resize bilinear ½" => best(runs, || imageops::resize(img, W / 2, H / 2, imageops::FilterType::Triangle)).0,
        "resize Lanczos3 ½" => best(runs, || imageops::resize(img, W / 2, H / 2, imageops::FilterType::Lanczos3)).0,
        "crop ½" => best(runs, || imageops::crop_imm(img, 960, 540, 1920, 1080).to_image()).0,
        "flip h" => best(runs, || imageops::flip_horizontal(img)).0,
        "rotate 90" => best(runs, || imageops::rotate90(img)).0,
        _ => return None,
    };
    Some(d)
}

/// fast_image_resize on its own (what the simd backend calls for resize).
fn peer_fir(name: &str, image: &Image, runs: usize) -> Option<Duration> {
    use fast_image_resize as fir;
    let filter = match name {
        "resize bilinear ½" => fir::FilterType::Bilinear,
        "resize Lanczos3 ½" => fir::FilterType::Lanczos3,
        _ => return None,
    };
    let src = fir::images::ImageRef::new(W, H, image.pixels(), fir::PixelType::U8x4).unwrap();
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(filter)).use_alpha(false);
    let mut resizer = fir::Resizer::new();
    Some(
        best(runs, || {
            let mut dst = fir::images::Image::new(W / 2, H / 2, fir::PixelType::U8x4);
            resizer.resize(&src, &mut dst, &options).unwrap();
            dst
        })
        .0,
    )
}
