//! `wimpy compute KEY... --op OP...`.

use std::path::PathBuf;

use serde_json::{Value, json};
use wimpy_client::job::{BackendKind, Job, UnknownBackend};
use wimpy_client::{ComputeOutput, ComputeRequest};

use super::{Session, hex};
use crate::failure::Failure;
use crate::{Format, files};

/// Run image operations on the worker that owns each KEY; the result goes
/// to -o FILE, under --store-as KEY, or (for one key) to standard output.
///
/// Operations: decode, grayscale, invert, brightness:B[:CONTRAST],
/// contrast:C, threshold:LEVEL, blur:SIGMA, box-blur:RADIUS,
/// sharpen[:SIGMA[:AMOUNT]], sobel, conv3:W1,..,W9[/DIV],
/// conv5:W1,..,W25[/DIV], resize:W:H[:bilinear|lanczos3], crop:X:Y:W:H,
/// flip:h|v, rotate:90|180|270, encode:png, encode:jpeg[:Q],
/// blake3[:ROUNDS], sha256[:ROUNDS]. A leading decode is implied; a job
/// ending on an image is encoded as PNG.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  wimpy compute photo --op grayscale --op blur:2 --op resize:80:60 -o small.png\n  wimpy compute photo --op invert -o - | display -\n  wimpy compute photo --op sobel --store-as photo-edges\n  wimpy compute a b c --op resize:64:64 --store-as -thumb   # stores a-thumb, b-thumb, c-thumb"
)]
pub(crate) struct Compute {
    /// Keys to run the job over (several run as one batch per worker).
    #[arg(required = true)]
    keys: Vec<String>,
    /// One operation; repeat in order.
    #[arg(long = "op", required = true)]
    ops: Vec<String>,
    /// Backend to run on: auto, cpu, simd, gles or wgpu.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Write the result to FILE (one key only; - for standard output, with
    /// no report).
    #[arg(short = 'o', long = "out", value_name = "FILE", conflicts_with = "store_as")]
    out: Option<PathBuf>,
    /// Store the result under this key (with several keys: under KEY + this
    /// suffix).
    #[arg(long, value_name = "KEY")]
    store_as: Option<String>,
    /// How long the job may run on the worker, in milliseconds.
    #[arg(long)]
    deadline_ms: Option<u64>,
}

impl Compute {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let request = ComputeRequest {
            job: Job::parse(&self.ops).map_err(Failure::refused)?,
            backend: parse_backend(&self.backend)?,
            deadline: self.deadline_ms.map(std::time::Duration::from_millis),
        };
        match self.keys.as_slice() {
            [key] => self.one(s, key, &request).await,
            keys if self.out.is_some() => {
                Err(Failure::usage(format!("-o FILE takes one key, not {}; use --store-as SUFFIX", keys.len())))
            }
            keys => self.many(s, keys, &request).await,
        }
    }

    async fn one(&self, s: &Session, key: &str, request: &ComputeRequest) -> Result<(), Failure> {
        let Some(result) = s.client.compute(key.as_bytes(), request).await? else {
            return Err(Failure::not_found(key));
        };
        let digest = request.job.gives_digest();
        let to = match (&self.out, &self.store_as) {
            // Standard output carries the result itself: no report beside it.
            (Some(path), _) if files::is_std(path) => return files::write_output(path, &result.bytes),
            (Some(path), _) => {
                files::write_output(path, &result.bytes)?;
                path.display().to_string()
            }
            (None, Some(to)) => {
                s.client.put(to.as_bytes(), &result.bytes).await?;
                format!("key {to}")
            }
            // A digest is printed as hex, and JSON describes the result;
            // otherwise standard output carries the result itself.
            (None, None) if digest || s.format == Format::Json => {
                return s.print(|| format!("{}\n", hex(&result.bytes)), || output_json(key, &result, None, digest));
            }
            (None, None) => return files::write_output("-".as_ref(), &result.bytes),
        };
        s.print(|| output_line(key, &result, &to), || output_json(key, &result, Some(&to), digest))
    }

    /// One job over many keys: a line per key, in order; the first failure
    /// sets the exit code once every key has had its line.
    async fn many(&self, s: &Session, keys: &[String], request: &ComputeRequest) -> Result<(), Failure> {
        let key_bytes: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let results = s.client.compute_batch(&key_bytes, request).await;
        let digest = request.job.gives_digest();
        let mut first_failure: Option<Failure> = None;
        for (key, result) in keys.iter().zip(results) {
            let (failure, message) = match result {
                Ok(Some(r)) => {
                    let to = match &self.store_as {
                        Some(suffix) => {
                            let to = format!("{key}{suffix}");
                            s.client.put(to.as_bytes(), &r.bytes).await?;
                            Some(format!("key {to}"))
                        }
                        None => None,
                    };
                    s.print(
                        || output_line(key, &r, to.as_deref().unwrap_or("(not stored)")),
                        || output_json(key, &r, to.as_deref(), digest),
                    )?;
                    continue;
                }
                Ok(None) => (Failure::not_found(key), "not found".to_string()),
                Err(e) => {
                    let message = e.to_string();
                    (Failure::from(e), message)
                }
            };
            s.print(|| format!("{key}: {message}\n"), || json!({"ok": false, "key": key, "error": message}))?;
            first_failure.get_or_insert(failure);
        }
        first_failure.map_or(Ok(()), Err)
    }
}

/// `auto` or a backend's name.
pub(crate) fn parse_backend(name: &str) -> Result<Option<BackendKind>, Failure> {
    if name == "auto" {
        return Ok(None);
    }
    name.parse().map(Some).map_err(|e: UnknownBackend| Failure::usage(e.to_string()))
}

/// A result for programs: what ran where, how long each stage took.
pub(crate) fn output_json(key: &str, r: &ComputeOutput, stored: Option<&str>, digest: bool) -> Value {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut v = json!({
        "ok": true, "key": key, "bytes": r.bytes.len(), "backend": r.backend.to_string(), "device": r.device,
        "software": r.software, "worker": r.worker,
        "times_ms": {"decode": ms(r.times.decode), "upload": ms(r.times.upload), "kernel": ms(r.times.kernel),
                     "download": ms(r.times.download), "encode": ms(r.times.encode)},
    });
    if let Some((w, h)) = r.size {
        v["width"] = json!(w);
        v["height"] = json!(h);
    }
    if digest {
        v["digest"] = json!(hex(&r.bytes));
    }
    if let Some(to) = stored {
        v["stored"] = json!(to);
    }
    v
}

/// A result for people, on one line.
fn output_line(key: &str, r: &ComputeOutput, to: &str) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let size = r.size.map(|(w, h)| format!("{w}x{h}, ")).unwrap_or_default();
    format!(
        "{key}: {size}{} bytes to {to} on worker {}, {} ({}{}): decode {:.1} ms, upload {:.1}, kernel {:.1}, download {:.1}, encode {:.1}\n",
        r.bytes.len(),
        r.worker,
        r.backend,
        r.device,
        if r.software { ", software" } else { "" },
        ms(r.times.decode),
        ms(r.times.upload),
        ms(r.times.kernel),
        ms(r.times.download),
        ms(r.times.encode)
    )
}
