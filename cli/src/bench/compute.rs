//! `wimpy bench compute`: the CPU-against-GPU run through the real service.
//! One stored picture; each operation runs as its own job (decode, the
//! operation, encode) on each backend in turn, on the worker that owns the
//! picture, with the stage times that worker reports.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use wimpy_client::job::{BackendKind, Job};
use wimpy_client::{Client, ClientError, ComputeRequest, StageTimes};

use super::plot::Bar;
use super::report::{histogram_base64, latency_json};
use super::run::error_kind;

/// Stage names, in the order the worker runs them.
pub const STAGES: [&str; 6] = ["decode", "upload", "kernel", "download", "encode", "rpc+queue"];

/// One operation on one backend.
#[derive(Debug)]
pub struct Cell {
    pub op: String,
    /// The job gives a digest (its rate is in MB/s of input, not MP/s).
    pub digest: bool,
    pub backend: BackendKind,
    pub result: Result<Measured, String>,
}

/// What the runs of one cell measured.
#[derive(Debug)]
pub struct Measured {
    pub device: String,
    pub software: bool,
    /// End-to-end latency at the client, in microseconds.
    pub latency: Histogram<u64>,
    /// Mean time per stage on the worker, then the rest of the round trip.
    pub stages_ms: [f64; 6],
}

/// Runs every op on every backend `runs` times (after one warm-up run that
/// loads shaders and fills caches) against the picture at `key`.
pub async fn measure(
    client: &Client,
    key: &str,
    ops: &[String],
    backends: &[BackendKind],
    runs: u32,
    mut progress: impl FnMut(),
) -> Result<Vec<Cell>, String> {
    let mut cells = Vec::new();
    for op in ops {
        let job = Job::parse(std::slice::from_ref(op)).map_err(|e| format!("{op}: {e}"))?;
        for &backend in backends {
            let req = ComputeRequest { job: job.clone(), backend: Some(backend), deadline: None };
            let result = measure_one(client, key, &req, runs, &mut progress).await;
            cells.push(Cell { op: op.clone(), digest: job.gives_digest(), backend, result });
        }
    }
    Ok(cells)
}

async fn measure_one(
    client: &Client,
    key: &str,
    req: &ComputeRequest,
    runs: u32,
    progress: &mut impl FnMut(),
) -> Result<Measured, String> {
    let once = || async {
        let started = Instant::now();
        match client.compute(key.as_bytes(), req).await {
            Ok(Some(out)) => Ok((started.elapsed(), out)),
            Ok(None) => Err(format!("{key}: not found")),
            Err(e) => Err(describe(&e)),
        }
    };
    once().await?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let mut sums = [0f64; 6];
    let mut seen = None;
    for _ in 0..runs.max(1) {
        let (took, out) = once().await?;
        latency.saturating_record((took.as_micros() as u64).max(1));
        let worker = stage_ms(&out.times);
        for (s, v) in sums.iter_mut().zip(worker) {
            *s += v;
        }
        sums[5] += (took.as_secs_f64() * 1e3 - worker.iter().sum::<f64>()).max(0.0);
        seen = Some((out.device, out.software));
        progress();
    }
    let (device, software) = seen.expect("at least one run");
    Ok(Measured { device, software, latency, stages_ms: sums.map(|s| s / f64::from(runs.max(1))) })
}

fn stage_ms(t: &StageTimes) -> [f64; 5] {
    [t.decode, t.upload, t.kernel, t.download, t.encode].map(|d: Duration| d.as_secs_f64() * 1e3)
}

/// An error as a kind plus its words, e.g. `compute:backend_unavailable (no EGL display)`.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Compute(c) => format!("{} ({})", error_kind(e), c.message),
        other => format!("{}: {other}", error_kind(other)),
    }
}

pub fn cells_json(cells: &[Cell], pixels: u64, bytes: u64) -> Value {
    json!(
        cells
            .iter()
            .map(|c| match &c.result {
                Ok(m) => {
                    let p50_s = m.latency.value_at_quantile(0.5) as f64 / 1e6;
                    let (r, unit) = rate(c.digest, p50_s, pixels, bytes);
                    let (kernel, _) = rate(c.digest, m.stages_ms[2] / 1e3, pixels, bytes);
                    json!({
                        "op": c.op, "backend": c.backend.to_string(), "ok": true,
                        "device": m.device, "software": m.software, "runs": m.latency.len(),
                        "latency_us": latency_json(&m.latency),
                        "histogram": histogram_base64(&m.latency),
                        "stages_ms": STAGES.iter().zip(m.stages_ms).map(|(s, v)| (s.to_string(), json!(v)))
                            .collect::<serde_json::Map<_, _>>(),
                        "rate": r, "rate_unit": unit,
                        "kernel_rate": if m.stages_ms[2] > 0.0 { kernel } else { 0.0 },
                    })
                }
                Err(e) => json!({"op": c.op, "backend": c.backend.to_string(), "ok": false, "error": e}),
            })
            .collect::<Vec<_>>()
    )
}

/// The rate of one run: megapixels per second for image jobs, megabytes
/// of input per second for hashes.
fn rate(digest: bool, seconds: f64, pixels: u64, bytes: u64) -> (f64, &'static str) {
    if digest { (bytes as f64 / 1e6 / seconds, "MB/s") } else { (pixels as f64 / 1e6 / seconds, "MP/s") }
}

pub fn cells_text(cells: &[Cell], pixels: u64, bytes: u64) -> String {
    let w = cells.iter().map(|c| c.op.len()).max().unwrap_or(2).max(2);
    let mut out = format!(
        "{:<w$} {:<7} {:>9} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  {}\n",
        "op", "backend", "p50 ms", "rate", "decode", "upload", "kernel", "download", "encode", "rpc", "device"
    );
    for c in cells {
        match &c.result {
            Ok(m) => {
                let p50 = m.latency.value_at_quantile(0.5) as f64 / 1e3;
                let (r, unit) = rate(c.digest, p50 / 1e3, pixels, bytes);
                let s = m.stages_ms;
                out += &format!(
                    "{:<w$} {:<7} {:>9.2} {:>7.1} {unit} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}{}\n",
                    c.op,
                    c.backend.to_string(),
                    p50,
                    r,
                    s[0],
                    s[1],
                    s[2],
                    s[3],
                    s[4],
                    s[5],
                    m.device,
                    if m.software { " (software)" } else { "" }
                );
            }
            Err(e) => out += &format!("{:<w$} {:<7} {e}\n", c.op, c.backend.to_string()),
        }
    }
    out
}

pub fn cells_bars(cells: &[Cell]) -> Vec<Bar> {
    cells
        .iter()
        .filter_map(|c| {
            let m = c.result.as_ref().ok()?;
            Some(Bar { group: c.op.clone(), name: c.backend.to_string(), segments: m.stages_ms.to_vec() })
        })
        .collect()
}
