//! Compute jobs: an ordered list of typed operations over the value at a key.
//!
//! A job is checked as a little typed pipeline before any work is done: the
//! value starts as bytes; `decode` turns bytes into an image; image operations
//! take and give an image; `encode` turns an image back into bytes; a hash takes
//! bytes and gives a 32-byte digest (so `decode, grayscale, encode:png, sha256`
//! hashes the encoded result). A job that ends on an image is encoded as PNG.
//!
//! Every operation also has a one-word text form (`blur:2`, `resize:640:480`)
//! that the CLI reads and [`Op`]'s `Display` writes, so a job can be logged and
//! read back. Parameters are checked here, with the limit in the error.

use std::fmt;
use std::str::FromStr;

/// Largest Gaussian σ (the kernel spans ±3σ pixels).
pub const MAX_SIGMA: f32 = 32.0;
/// Largest box-blur radius.
pub const MAX_BOX_RADIUS: u32 = 100;
/// Largest unsharp-mask amount.
pub const MAX_SHARPEN_AMOUNT: f32 = 10.0;
/// Largest contrast factor.
pub const MAX_CONTRAST: f32 = 16.0;
/// Largest magnitude of a convolution kernel weight (after the divisor).
pub const MAX_KERNEL_WEIGHT: f32 = 64.0;
/// Largest hash round count (the schema's `maxHashRounds`).
pub const MAX_HASH_ROUNDS: u32 = crate::wimpy_capnp::MAX_HASH_ROUNDS;
/// Largest output side of a resize or crop, in pixels (the schema's
/// `maxImageSide`).
pub const MAX_SIDE: u32 = crate::wimpy_capnp::MAX_IMAGE_SIDE;

/// One operation of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Decode PNG or JPEG bytes (format detected from the bytes) into RGBA.
    Decode,
    /// An operation on a decoded image.
    Image(ImageOp),
    /// Encode the image as bytes.
    Encode(Encoding),
    /// Hash the bytes.
    Hash(HashOp),
}

/// An operation on an RGBA8 image. Colour operations leave alpha as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageOp {
    /// Luma (BT.601, integer weights 77/150/29 of 256) into R, G and B.
    Grayscale,
    /// 255 − value for R, G and B.
    Invert,
    /// `(v − 128) × contrast + 128 + brightness`, clamped.
    BrightnessContrast { brightness: i32, contrast: f32 },
    /// 255 where luma ≥ the level, else 0 (R, G and B).
    Threshold(u8),
    /// Separable Gaussian blur, kernel radius ⌈3σ⌉, edges clamped.
    GaussianBlur { sigma: f32 },
    /// Separable box blur of the given radius, edges clamped.
    BoxBlur { radius: u32 },
    /// Unsharp mask: `v + amount × (v − gaussian(σ))`, clamped.
    Sharpen { sigma: f32, amount: f32 },
    /// Sobel gradient magnitude of luma, clamped to 255.
    Sobel,
    /// A user 3×3 or 5×5 kernel over R, G and B, edges clamped.
    Convolve(ConvKernel),
    /// Resize to `width × height`.
    Resize { width: u32, height: u32, filter: ResizeFilter },
    /// Keep the `width × height` rectangle at (`x`, `y`).
    Crop { x: u32, y: u32, width: u32, height: u32 },
    /// Mirror the image.
    Flip(FlipAxis),
    /// Rotate clockwise.
    Rotate(Rotation),
}

/// A square convolution kernel, row-major, weights already divided by the
/// divisor the user gave.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvKernel {
    /// 3 or 5.
    pub size: u32,
    /// `size × size` weights.
    pub weights: Vec<f32>,
}

/// The resampling filter of a resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeFilter {
    /// Triangle filter, support 1 (scaled up when shrinking).
    Bilinear,
    /// Windowed sinc, support 3 (scaled up when shrinking).
    Lanczos3,
}

/// Which way a flip mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlipAxis {
    /// Left and right swap.
    Horizontal,
    /// Top and bottom swap.
    Vertical,
}

/// A clockwise rotation by a quarter turn multiple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// 90° clockwise.
    Quarter,
    /// 180°.
    Half,
    /// 270° clockwise (90° counter-clockwise).
    ThreeQuarters,
}

/// How an image becomes bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lossless PNG, RGBA.
    Png,
    /// JPEG at a quality of 1–100 (alpha dropped).
    Jpeg { quality: u8 },
}

/// A hash of bytes, optionally iterated: round 1 hashes the bytes, each
/// further round hashes the previous 32-byte digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashOp {
    /// Which hash.
    pub algo: HashAlgo,
    /// How many times (≥ 1).
    pub rounds: u32,
}

/// A 256-bit hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgo {
    /// BLAKE3 (32-byte output).
    Blake3,
    /// SHA-256.
    Sha256,
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgo::Blake3 => "blake3",
            HashAlgo::Sha256 => "sha256",
        })
    }
}

impl FromStr for HashAlgo {
    type Err = OpError;
    fn from_str(s: &str) -> Result<HashAlgo, OpError> {
        match s {
            "blake3" => Ok(HashAlgo::Blake3),
            "sha256" => Ok(HashAlgo::Sha256),
            _ => Err(OpError::Unknown(s.to_string())),
        }
    }
}

/// A family of backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// Scalar Rust: the definition of correct.
    Cpu,
    /// NEON or SSE2/AVX2.
    Simd,
    /// OpenGL ES 3.0 fragment shaders through EGL.
    Gles,
    /// WGSL compute shaders through wgpu.
    Wgpu,
}

impl BackendKind {
    /// Every kind, in the order the engine prefers them.
    pub const PREFERENCE: [BackendKind; 4] =
        [BackendKind::Wgpu, BackendKind::Gles, BackendKind::Simd, BackendKind::Cpu];

    /// The kind's name on the command line and the wire.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Simd => "simd",
            BackendKind::Gles => "gles",
            BackendKind::Wgpu => "wgpu",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is not one of `cpu`, `simd`, `gles`, `wgpu`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?} (cpu, simd, gles or wgpu)")]
pub struct UnknownBackend(pub String);

impl FromStr for BackendKind {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<BackendKind, UnknownBackend> {
        match s {
            "cpu" => Ok(BackendKind::Cpu),
            "simd" => Ok(BackendKind::Simd),
            "gles" => Ok(BackendKind::Gles),
            "wgpu" => Ok(BackendKind::Wgpu),
            _ => Err(UnknownBackend(s.to_string())),
        }
    }
}

/// Where a compute job's time went, per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Bytes to pixels.
    pub decode: std::time::Duration,
    /// Host memory to the device (zero on CPU backends).
    pub upload: std::time::Duration,
    /// The operations themselves.
    pub kernel: std::time::Duration,
    /// Device memory back to the host (zero on CPU backends).
    pub download: std::time::Duration,
    /// Pixels to bytes.
    pub encode: std::time::Duration,
}

/// A job or an operation that cannot run as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// No operation has this name.
    #[error("unknown operation {0:?}")]
    Unknown(String),
    /// The operation's arguments do not parse.
    #[error("bad arguments for {op}: {reason} (expected {expected})")]
    BadArguments { op: &'static str, reason: String, expected: &'static str },
    /// A parameter is outside its range.
    #[error("{op}: {param} is {actual}, allowed {allowed}")]
    OutOfRange { op: &'static str, param: &'static str, actual: String, allowed: String },
    /// The operation needs a different input than the step before gives.
    #[error("operation {index} ({op}) takes {wants} but gets {has}")]
    WrongInput { index: usize, op: String, wants: Stage, has: Stage },
    /// A job with no operations.
    #[error("a job needs at least one operation")]
    Empty,
    /// A job message that does not read (an unknown union member, say).
    #[error("malformed job: {0}")]
    Malformed(String),
}

/// What flows between operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Encoded bytes (the stored value, or an encoder's output).
    Bytes,
    /// A decoded RGBA8 image.
    Image,
    /// A hash digest.
    Digest,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Bytes => "bytes",
            Stage::Image => "an image",
            Stage::Digest => "a digest",
        })
    }
}

impl Op {
    /// What the operation takes.
    pub fn input(&self) -> Stage {
        match self {
            Op::Decode | Op::Hash(_) => Stage::Bytes,
            Op::Image(_) | Op::Encode(_) => Stage::Image,
        }
    }

    /// What the operation gives.
    pub fn output(&self) -> Stage {
        match self {
            Op::Decode | Op::Image(_) => Stage::Image,
            Op::Encode(_) => Stage::Bytes,
            Op::Hash(_) => Stage::Digest,
        }
    }

    /// Checks the operation's parameters against their limits.
    pub fn validate(&self) -> Result<(), OpError> {
        fn range<T: PartialOrd + fmt::Display>(
            op: &'static str,
            param: &'static str,
            v: T,
            lo: T,
            hi: T,
        ) -> Result<(), OpError> {
            // Written so NaN fails too.
            if v >= lo && v <= hi {
                Ok(())
            } else {
                Err(OpError::OutOfRange { op, param, actual: v.to_string(), allowed: format!("{lo}..={hi}") })
            }
        }
        match self {
            Op::Decode => Ok(()),
            Op::Encode(Encoding::Png) => Ok(()),
            Op::Encode(Encoding::Jpeg { quality }) => range("encode", "quality", *quality, 1, 100),
            Op::Hash(h) => range(h.algo.name(), "rounds", h.rounds, 1, MAX_HASH_ROUNDS),
            Op::Image(op) => match op {
                ImageOp::Grayscale | ImageOp::Invert | ImageOp::Sobel | ImageOp::Threshold(_) => Ok(()),
                ImageOp::Flip(_) | ImageOp::Rotate(_) => Ok(()),
                ImageOp::BrightnessContrast { brightness, contrast } => {
                    range("brightness", "brightness", *brightness, -255, 255)?;
                    range("brightness", "contrast", *contrast, 0.0, MAX_CONTRAST)
                }
                ImageOp::GaussianBlur { sigma } => range("blur", "sigma", *sigma, 0.1, MAX_SIGMA),
                ImageOp::BoxBlur { radius } => range("box-blur", "radius", *radius, 1, MAX_BOX_RADIUS),
                ImageOp::Sharpen { sigma, amount } => {
                    range("sharpen", "sigma", *sigma, 0.1, MAX_SIGMA)?;
                    range("sharpen", "amount", *amount, 0.0, MAX_SHARPEN_AMOUNT)
                }
                ImageOp::Convolve(k) => {
                    let name = if k.size == 5 { "conv5" } else { "conv3" };
                    if k.size != 3 && k.size != 5 {
                        return Err(OpError::OutOfRange {
                            op: "conv",
                            param: "size",
                            actual: k.size.to_string(),
                            allowed: "3 or 5".into(),
                        });
                    }
                    range(
                        name,
                        "weight count",
                        k.weights.len(),
                        (k.size * k.size) as usize,
                        (k.size * k.size) as usize,
                    )?;
                    for w in &k.weights {
                        range(name, "weight", *w, -MAX_KERNEL_WEIGHT, MAX_KERNEL_WEIGHT)?;
                    }
                    Ok(())
                }
                ImageOp::Resize { width, height, .. } => {
                    range("resize", "width", *width, 1, MAX_SIDE)?;
                    range("resize", "height", *height, 1, MAX_SIDE)
                }
                ImageOp::Crop { width, height, .. } => {
                    range("crop", "width", *width, 1, MAX_SIDE)?;
                    range("crop", "height", *height, 1, MAX_SIDE)
                }
            },
        }
    }
}

impl HashAlgo {
    /// The name used in the text form.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Blake3 => "blake3",
            HashAlgo::Sha256 => "sha256",
        }
    }
}

/// A checked job: operations whose inputs and outputs line up, starting from
/// the stored bytes and ending on bytes or a digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    ops: Vec<Op>,
}

impl Job {
    /// Checks `ops` (parameters and the chain of inputs) and appends
    /// `encode:png` when they end on an image.
    pub fn new(mut ops: Vec<Op>) -> Result<Job, OpError> {
        if ops.is_empty() {
            return Err(OpError::Empty);
        }
        let mut has = Stage::Bytes;
        for (index, op) in ops.iter().enumerate() {
            op.validate()?;
            if op.input() != has {
                return Err(OpError::WrongInput { index, op: op.to_string(), wants: op.input(), has });
            }
            has = op.output();
        }
        if has == Stage::Image {
            ops.push(Op::Encode(Encoding::Png));
        }
        Ok(Job { ops })
    }

    /// Parses text forms (`decode`, `blur:2`, ...) and checks them as [`Job::new`].
    /// A job whose first operation takes an image gets an implicit `decode`.
    pub fn parse<S: AsRef<str>>(ops: &[S]) -> Result<Job, OpError> {
        let mut parsed = ops.iter().map(|s| s.as_ref().parse::<Op>()).collect::<Result<Vec<_>, _>>()?;
        if parsed.first().is_some_and(|op| op.input() == Stage::Image) {
            parsed.insert(0, Op::Decode);
        }
        Job::new(parsed)
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Whether the job gives a digest rather than bytes.
    pub fn gives_digest(&self) -> bool {
        self.ops.last().is_some_and(|op| op.output() == Stage::Digest)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Decode => f.write_str("decode"),
            Op::Encode(Encoding::Png) => f.write_str("encode:png"),
            Op::Encode(Encoding::Jpeg { quality }) => write!(f, "encode:jpeg:{quality}"),
            Op::Hash(HashOp { algo, rounds: 1 }) => write!(f, "{algo}"),
            Op::Hash(HashOp { algo, rounds }) => write!(f, "{algo}:{rounds}"),
            Op::Image(op) => match op {
                ImageOp::Grayscale => f.write_str("grayscale"),
                ImageOp::Invert => f.write_str("invert"),
                ImageOp::BrightnessContrast { brightness, contrast } => {
                    write!(f, "brightness:{brightness}:{contrast}")
                }
                ImageOp::Threshold(level) => write!(f, "threshold:{level}"),
                ImageOp::GaussianBlur { sigma } => write!(f, "blur:{sigma}"),
                ImageOp::BoxBlur { radius } => write!(f, "box-blur:{radius}"),
                ImageOp::Sharpen { sigma, amount } => write!(f, "sharpen:{sigma}:{amount}"),
                ImageOp::Sobel => f.write_str("sobel"),
                ImageOp::Convolve(k) => {
                    write!(f, "conv{}:", k.size)?;
                    for (i, w) in k.weights.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{w}")?;
                    }
                    Ok(())
                }
                ImageOp::Resize { width, height, filter } => {
                    let name = match filter {
                        ResizeFilter::Bilinear => "bilinear",
                        ResizeFilter::Lanczos3 => "lanczos3",
                    };
                    write!(f, "resize:{width}:{height}:{name}")
                }
                ImageOp::Crop { x, y, width, height } => write!(f, "crop:{x}:{y}:{width}:{height}"),
                ImageOp::Flip(FlipAxis::Horizontal) => f.write_str("flip:h"),
                ImageOp::Flip(FlipAxis::Vertical) => f.write_str("flip:v"),
                ImageOp::Rotate(Rotation::Quarter) => f.write_str("rotate:90"),
                ImageOp::Rotate(Rotation::Half) => f.write_str("rotate:180"),
                ImageOp::Rotate(Rotation::ThreeQuarters) => f.write_str("rotate:270"),
            },
        }
    }
}

/// Reads one argument of an operation's text form.
fn arg<T: FromStr>(op: &'static str, expected: &'static str, s: &str) -> Result<T, OpError> {
    s.parse().map_err(|_| OpError::BadArguments { op, reason: format!("{s:?} is not a number"), expected })
}

/// Checks the argument count of an operation's text form.
fn arity(op: &'static str, expected: &'static str, args: &[&str], lo: usize, hi: usize) -> Result<(), OpError> {
    if args.len() < lo || args.len() > hi {
        return Err(OpError::BadArguments { op, reason: format!("{} arguments", args.len()), expected });
    }
    Ok(())
}

impl FromStr for Op {
    type Err = OpError;

    /// Parses and validates one operation's text form.
    fn from_str(s: &str) -> Result<Op, OpError> {
        let mut parts = s.trim().split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let op = match name {
            "decode" => {
                arity("decode", "decode", &args, 0, 0)?;
                Op::Decode
            }
            "encode" => {
                const E: &str = "encode:png or encode:jpeg[:QUALITY]";
                arity("encode", E, &args, 1, 2)?;
                match (args[0], args.get(1)) {
                    ("png", None) => Op::Encode(Encoding::Png),
                    ("jpeg" | "jpg", q) => {
                        let quality = match q {
                            Some(q) => arg::<u8>("encode", E, q)?,
                            None => 90,
                        };
                        Op::Encode(Encoding::Jpeg { quality })
                    }
                    _ => return Err(OpError::BadArguments { op: "encode", reason: format!("{s:?}"), expected: E }),
                }
            }
            "blake3" | "sha256" => {
                const E: &str = "ALGO[:ROUNDS]";
                arity("hash", E, &args, 0, 1)?;
                let rounds = match args.first() {
                    Some(r) => arg::<u32>("hash", E, r)?,
                    None => 1,
                };
                Op::Hash(HashOp { algo: name.parse()?, rounds })
            }
            _ => Op::Image(parse_image_op(name, &args)?),
        };
        op.validate()?;
        Ok(op)
    }
}

fn parse_image_op(name: &str, args: &[&str]) -> Result<ImageOp, OpError> {
    Ok(match name {
        "grayscale" | "gray" | "greyscale" => {
            arity("grayscale", "grayscale", args, 0, 0)?;
            ImageOp::Grayscale
        }
        "invert" => {
            arity("invert", "invert", args, 0, 0)?;
            ImageOp::Invert
        }
        "brightness" => {
            const E: &str = "brightness:B[:CONTRAST]";
            arity("brightness", E, args, 1, 2)?;
            let brightness = arg("brightness", E, args[0])?;
            let contrast = match args.get(1) {
                Some(c) => arg("brightness", E, c)?,
                None => 1.0,
            };
            ImageOp::BrightnessContrast { brightness, contrast }
        }
        "contrast" => {
            const E: &str = "contrast:FACTOR";
            arity("contrast", E, args, 1, 1)?;
            ImageOp::BrightnessContrast { brightness: 0, contrast: arg("contrast", E, args[0])? }
        }
        "threshold" => {
            const E: &str = "threshold:LEVEL (0-255)";
            arity("threshold", E, args, 1, 1)?;
            ImageOp::Threshold(arg("threshold", E, args[0])?)
        }
        "blur" | "gaussian-blur" => {
            const E: &str = "blur:SIGMA";
            arity("blur", E, args, 1, 1)?;
            ImageOp::GaussianBlur { sigma: arg("blur", E, args[0])? }
        }
        "box-blur" | "boxblur" => {
            const E: &str = "box-blur:RADIUS";
            arity("box-blur", E, args, 1, 1)?;
            ImageOp::BoxBlur { radius: arg("box-blur", E, args[0])? }
        }
        "sharpen" => {
            const E: &str = "sharpen[:SIGMA[:AMOUNT]]";
            arity("sharpen", E, args, 0, 2)?;
            let sigma = args.first().map(|a| arg("sharpen", E, a)).transpose()?.unwrap_or(1.0);
            let amount = args.get(1).map(|a| arg("sharpen", E, a)).transpose()?.unwrap_or(1.0);
            ImageOp::Sharpen { sigma, amount }
        }
        "sobel" | "edges" => {
            arity("sobel", "sobel", args, 0, 0)?;
            ImageOp::Sobel
        }
        "conv3" | "conv5" => {
            const E: &str = "conv3:W1,...,W9[/DIVISOR] or conv5:W1,...,W25[/DIVISOR]";
            let op = if name == "conv3" { "conv3" } else { "conv5" };
            arity(op, E, args, 1, 1)?;
            let size = if name == "conv3" { 3 } else { 5 };
            let (list, divisor) = match args[0].split_once('/') {
                Some((list, d)) => (list, arg::<f32>(op, E, d)?),
                None => (args[0], 1.0),
            };
            if divisor == 0.0 || !divisor.is_finite() {
                return Err(OpError::BadArguments { op, reason: "divisor must be non-zero".into(), expected: E });
            }
            let weights =
                list.split(',').map(|w| arg::<f32>(op, E, w.trim()).map(|w| w / divisor)).collect::<Result<_, _>>()?;
            ImageOp::Convolve(ConvKernel { size, weights })
        }
        "resize" => {
            const E: &str = "resize:WIDTH:HEIGHT[:bilinear|lanczos3]";
            arity("resize", E, args, 2, 3)?;
            let filter = match args.get(2) {
                None | Some(&"lanczos3") => ResizeFilter::Lanczos3,
                Some(&"bilinear") => ResizeFilter::Bilinear,
                Some(other) => {
                    return Err(OpError::BadArguments {
                        op: "resize",
                        reason: format!("unknown filter {other:?}"),
                        expected: E,
                    });
                }
            };
            ImageOp::Resize { width: arg("resize", E, args[0])?, height: arg("resize", E, args[1])?, filter }
        }
        "crop" => {
            const E: &str = "crop:X:Y:WIDTH:HEIGHT";
            arity("crop", E, args, 4, 4)?;
            ImageOp::Crop {
                x: arg("crop", E, args[0])?,
                y: arg("crop", E, args[1])?,
                width: arg("crop", E, args[2])?,
                height: arg("crop", E, args[3])?,
            }
        }
        "flip" => {
            const E: &str = "flip:h or flip:v";
            arity("flip", E, args, 1, 1)?;
            match args[0] {
                "h" | "horizontal" => ImageOp::Flip(FlipAxis::Horizontal),
                "v" | "vertical" => ImageOp::Flip(FlipAxis::Vertical),
                other => {
                    return Err(OpError::BadArguments { op: "flip", reason: format!("{other:?}"), expected: E });
                }
            }
        }
        "rotate" => {
            const E: &str = "rotate:90, rotate:180 or rotate:270";
            arity("rotate", E, args, 1, 1)?;
            match args[0] {
                "90" => ImageOp::Rotate(Rotation::Quarter),
                "180" => ImageOp::Rotate(Rotation::Half),
                "270" => ImageOp::Rotate(Rotation::ThreeQuarters),
                other => {
                    return Err(OpError::BadArguments { op: "rotate", reason: format!("{other:?}"), expected: E });
                }
            }
        }
        other => return Err(OpError::Unknown(other.to_string())),
    })
}

/// The wire forms of jobs (`Op`, `Job`, `Backend` in wimpy.capnp).
pub mod wire {
    use super::*;
    use crate::wimpy_capnp::{self as w, op};

    /// The wire enum of a backend choice (`None` is `auto`).
    pub fn backend_to_wire(kind: Option<BackendKind>) -> w::Backend {
        match kind {
            None => w::Backend::Auto,
            Some(BackendKind::Cpu) => w::Backend::Cpu,
            Some(BackendKind::Simd) => w::Backend::Simd,
            Some(BackendKind::Gles) => w::Backend::Gles,
            Some(BackendKind::Wgpu) => w::Backend::Wgpu,
        }
    }

    /// A backend choice from the wire (`auto` is `None`).
    pub fn backend_from_wire(b: w::Backend) -> Option<BackendKind> {
        match b {
            w::Backend::Auto => None,
            w::Backend::Cpu => Some(BackendKind::Cpu),
            w::Backend::Simd => Some(BackendKind::Simd),
            w::Backend::Gles => Some(BackendKind::Gles),
            w::Backend::Wgpu => Some(BackendKind::Wgpu),
        }
    }

    fn algo_to_wire(a: HashAlgo) -> w::HashAlgo {
        match a {
            HashAlgo::Blake3 => w::HashAlgo::Blake3,
            HashAlgo::Sha256 => w::HashAlgo::Sha256,
        }
    }

    /// Fills in an `Op` builder.
    pub fn write_op(op: &Op, mut b: op::Builder<'_>) {
        match op {
            Op::Decode => b.set_decode(()),
            Op::Encode(Encoding::Png) => b.set_encode_png(()),
            Op::Encode(Encoding::Jpeg { quality }) => b.set_encode_jpeg(*quality),
            Op::Hash(h) => {
                let mut g = b.init_hash();
                g.set_algo(algo_to_wire(h.algo));
                g.set_rounds(h.rounds);
            }
            Op::Image(op) => match op {
                ImageOp::Grayscale => b.set_grayscale(()),
                ImageOp::Invert => b.set_invert(()),
                ImageOp::BrightnessContrast { brightness, contrast } => {
                    let mut g = b.init_brightness_contrast();
                    g.set_brightness(*brightness);
                    g.set_contrast(*contrast);
                }
                ImageOp::Threshold(level) => b.set_threshold(*level),
                ImageOp::GaussianBlur { sigma } => b.set_gaussian_blur(*sigma),
                ImageOp::BoxBlur { radius } => b.set_box_blur(*radius),
                ImageOp::Sharpen { sigma, amount } => {
                    let mut g = b.init_sharpen();
                    g.set_sigma(*sigma);
                    g.set_amount(*amount);
                }
                ImageOp::Sobel => b.set_sobel(()),
                ImageOp::Convolve(k) => {
                    let mut g = b.init_convolve();
                    g.set_size(k.size as u8);
                    let mut list = g.init_weights(k.weights.len() as u32);
                    for (i, w) in k.weights.iter().enumerate() {
                        list.set(i as u32, *w);
                    }
                }
                ImageOp::Resize { width, height, filter } => {
                    let mut g = b.init_resize();
                    g.set_width(*width);
                    g.set_height(*height);
                    g.set_filter(match filter {
                        ResizeFilter::Bilinear => w::ResizeFilter::Bilinear,
                        ResizeFilter::Lanczos3 => w::ResizeFilter::Lanczos3,
                    });
                }
                ImageOp::Crop { x, y, width, height } => {
                    let mut g = b.init_crop();
                    g.set_x(*x);
                    g.set_y(*y);
                    g.set_width(*width);
                    g.set_height(*height);
                }
                ImageOp::Flip(FlipAxis::Horizontal) => b.set_flip_horizontal(()),
                ImageOp::Flip(FlipAxis::Vertical) => b.set_flip_vertical(()),
                ImageOp::Rotate(r) => b.set_rotate(match r {
                    Rotation::Quarter => 90,
                    Rotation::Half => 180,
                    Rotation::ThreeQuarters => 270,
                }),
            },
        }
    }

    /// Reads and validates an `Op`.
    pub fn read_op(r: op::Reader<'_>) -> Result<Op, OpError> {
        let bad = |e: capnp::Error| OpError::Malformed(e.to_string());
        let bad_enum = |e: capnp::NotInSchema| OpError::Malformed(e.to_string());
        let op = match r.which().map_err(bad_enum)? {
            op::Decode(()) => Op::Decode,
            op::EncodePng(()) => Op::Encode(Encoding::Png),
            op::EncodeJpeg(quality) => Op::Encode(Encoding::Jpeg { quality }),
            op::Hash(g) => Op::Hash(HashOp {
                algo: match g.get_algo().map_err(bad_enum)? {
                    w::HashAlgo::Blake3 => HashAlgo::Blake3,
                    w::HashAlgo::Sha256 => HashAlgo::Sha256,
                },
                rounds: g.get_rounds(),
            }),
            op::Grayscale(()) => Op::Image(ImageOp::Grayscale),
            op::Invert(()) => Op::Image(ImageOp::Invert),
            op::BrightnessContrast(g) => {
                Op::Image(ImageOp::BrightnessContrast { brightness: g.get_brightness(), contrast: g.get_contrast() })
            }
            op::Threshold(level) => Op::Image(ImageOp::Threshold(level)),
            op::GaussianBlur(sigma) => Op::Image(ImageOp::GaussianBlur { sigma }),
            op::BoxBlur(radius) => Op::Image(ImageOp::BoxBlur { radius }),
            op::Sharpen(g) => Op::Image(ImageOp::Sharpen { sigma: g.get_sigma(), amount: g.get_amount() }),
            op::Sobel(()) => Op::Image(ImageOp::Sobel),
            op::Convolve(g) => Op::Image(ImageOp::Convolve(ConvKernel {
                size: u32::from(g.get_size()),
                weights: g.get_weights().map_err(bad)?.iter().collect(),
            })),
            op::Resize(g) => Op::Image(ImageOp::Resize {
                width: g.get_width(),
                height: g.get_height(),
                filter: match g.get_filter().map_err(bad_enum)? {
                    w::ResizeFilter::Bilinear => ResizeFilter::Bilinear,
                    w::ResizeFilter::Lanczos3 => ResizeFilter::Lanczos3,
                },
            }),
            op::Crop(g) => {
                Op::Image(ImageOp::Crop { x: g.get_x(), y: g.get_y(), width: g.get_width(), height: g.get_height() })
            }
            op::FlipHorizontal(()) => Op::Image(ImageOp::Flip(FlipAxis::Horizontal)),
            op::FlipVertical(()) => Op::Image(ImageOp::Flip(FlipAxis::Vertical)),
            op::Rotate(degrees) => Op::Image(ImageOp::Rotate(match degrees {
                90 => Rotation::Quarter,
                180 => Rotation::Half,
                270 => Rotation::ThreeQuarters,
                other => {
                    return Err(OpError::OutOfRange {
                        op: "rotate",
                        param: "degrees",
                        actual: other.to_string(),
                        allowed: "90, 180 or 270".into(),
                    });
                }
            })),
        };
        op.validate()?;
        Ok(op)
    }

    /// Fills in a `Job` builder.
    pub fn write_job(job: &Job, backend: Option<BackendKind>, deadline_millis: u32, mut b: w::job::Builder<'_>) {
        b.set_backend(backend_to_wire(backend));
        b.set_deadline_millis(deadline_millis);
        let mut list = b.init_ops(job.ops().len() as u32);
        for (i, op) in job.ops().iter().enumerate() {
            write_op(op, list.reborrow().get(i as u32));
        }
    }

    /// Fills in a `StageTimes` builder.
    pub fn write_times(t: &StageTimes, mut b: w::stage_times::Builder<'_>) {
        b.set_decode_nanos(t.decode.as_nanos() as u64);
        b.set_upload_nanos(t.upload.as_nanos() as u64);
        b.set_kernel_nanos(t.kernel.as_nanos() as u64);
        b.set_download_nanos(t.download.as_nanos() as u64);
        b.set_encode_nanos(t.encode.as_nanos() as u64);
    }

    /// Reads a `StageTimes`.
    pub fn read_times(r: w::stage_times::Reader<'_>) -> StageTimes {
        let ns = std::time::Duration::from_nanos;
        StageTimes {
            decode: ns(r.get_decode_nanos()),
            upload: ns(r.get_upload_nanos()),
            kernel: ns(r.get_kernel_nanos()),
            download: ns(r.get_download_nanos()),
            encode: ns(r.get_encode_nanos()),
        }
    }

    /// Reads and checks a `Job`: the job, the backend asked for (`None` is
    /// auto), and the deadline in milliseconds (0 for the worker's default).
    pub fn read_job(r: w::job::Reader<'_>) -> Result<(Job, Option<BackendKind>, u32), OpError> {
        let ops = r.get_ops().map_err(|e| OpError::Malformed(e.to_string()))?;
        let ops = ops.iter().map(read_op).collect::<Result<Vec<_>, _>>()?;
        let backend = backend_from_wire(r.get_backend().map_err(|e| OpError::Malformed(e.to_string()))?);
        Ok((Job::new(ops)?, backend, r.get_deadline_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "decode",
            "grayscale",
            "invert",
            "brightness:20:1.5",
            "threshold:128",
            "blur:2",
            "box-blur:3",
            "sharpen:1.5:0.8",
            "sobel",
            "conv3:0,-1,0,-1,5,-1,0,-1,0",
            "resize:640:480:lanczos3",
            "resize:10:20:bilinear",
            "crop:1:2:3:4",
            "flip:h",
            "flip:v",
            "rotate:90",
            "rotate:180",
            "rotate:270",
            "encode:png",
            "encode:jpeg:85",
            "blake3",
            "sha256:1000",
        ] {
            let op: Op = text.parse().unwrap();
            assert_eq!(op.to_string(), text);
            assert_eq!(op.to_string().parse::<Op>().unwrap(), op);
        }
    }

    #[test]
    fn divisor_divides_the_kernel() {
        let op: Op = "conv3:1,2,1,2,4,2,1,2,1/16".parse().unwrap();
        let Op::Image(ImageOp::Convolve(k)) = op else { panic!() };
        assert_eq!(k.weights[4], 0.25);
        assert_eq!(k.weights.iter().sum::<f32>(), 1.0);
    }

    #[test]
    fn bad_text_is_a_typed_error() {
        assert!(matches!("swirl".parse::<Op>(), Err(OpError::Unknown(_))));
        assert!(matches!("blur".parse::<Op>(), Err(OpError::BadArguments { .. })));
        assert!(matches!("blur:x".parse::<Op>(), Err(OpError::BadArguments { .. })));
        assert!(matches!("blur:0".parse::<Op>(), Err(OpError::OutOfRange { .. })));
        assert!(matches!("blur:NaN".parse::<Op>(), Err(OpError::OutOfRange { .. })));
        assert!(matches!("box-blur:1000".parse::<Op>(), Err(OpError::OutOfRange { .. })));
        assert!(matches!("conv3:1,2,3".parse::<Op>(), Err(OpError::OutOfRange { .. })));
        assert!(matches!("conv3:1,1,1,1,1,1,1,1,1/0".parse::<Op>(), Err(OpError::BadArguments { .. })));
        assert!(matches!("resize:0:10".parse::<Op>(), Err(OpError::OutOfRange { .. })));
        assert!(matches!("encode:jpeg:0".parse::<Op>(), Err(OpError::OutOfRange { .. })));
        assert!(matches!("sha256:0".parse::<Op>(), Err(OpError::OutOfRange { .. })));
        assert!(matches!("rotate:45".parse::<Op>(), Err(OpError::BadArguments { .. })));
    }

    #[test]
    fn jobs_round_trip_through_messages() {
        let texts = [
            "decode",
            "grayscale",
            "invert",
            "brightness:20:1.5",
            "threshold:128",
            "blur:2",
            "box-blur:3",
            "sharpen:1.5:0.8",
            "sobel",
            "conv5:1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1/25",
            "resize:640:480:bilinear",
            "crop:1:2:3:4",
            "flip:h",
            "flip:v",
            "rotate:270",
            "encode:jpeg:85",
            "sha256:7",
        ];
        let job = Job::new(texts.iter().map(|t| t.parse().unwrap()).collect()).unwrap();
        let mut msg = capnp::message::Builder::new_default();
        wire::write_job(&job, Some(BackendKind::Gles), 250, msg.init_root());
        let (back, backend, deadline) = wire::read_job(msg.get_root_as_reader().unwrap()).unwrap();
        assert_eq!(back, job);
        assert_eq!(backend, Some(BackendKind::Gles));
        assert_eq!(deadline, 250);
    }

    #[test]
    fn jobs_from_the_wire_are_validated() {
        let mut msg = capnp::message::Builder::new_default();
        let mut b: crate::wimpy_capnp::job::Builder<'_> = msg.init_root();
        let mut ops = b.reborrow().init_ops(2);
        ops.reborrow().get(0).set_decode(());
        ops.reborrow().get(1).set_gaussian_blur(f32::NAN);
        assert!(matches!(wire::read_job(msg.get_root_as_reader().unwrap()), Err(OpError::OutOfRange { .. })));
        let mut msg = capnp::message::Builder::new_default();
        let mut b: crate::wimpy_capnp::job::Builder<'_> = msg.init_root();
        b.reborrow().init_ops(1).get(0).set_rotate(45);
        assert!(matches!(wire::read_job(msg.get_root_as_reader().unwrap()), Err(OpError::OutOfRange { .. })));
    }

    #[test]
    fn jobs_are_checked_as_pipelines() {
        let job = Job::parse(&["grayscale", "blur:2"]).unwrap();
        assert_eq!(job.ops().first(), Some(&Op::Decode));
        assert_eq!(job.ops().last(), Some(&Op::Encode(Encoding::Png)));
        assert!(!job.gives_digest());

        let job = Job::parse(&["decode", "invert", "encode:png", "sha256"]).unwrap();
        assert!(job.gives_digest());
        assert_eq!(job.ops().len(), 4);

        assert!(matches!(Job::parse(&["blake3", "invert"]), Err(OpError::WrongInput { index: 1, .. })));
        assert!(matches!(Job::parse(&["decode", "decode"]), Err(OpError::WrongInput { index: 1, .. })));
        assert!(matches!(Job::parse::<&str>(&[]), Err(OpError::Empty)));
    }
}
