//! `wimpy`: the command-line tool. Talks to a cluster through the client SDK,
//! runs a local one (`wimpy local`), or benchmarks one (`wimpy bench`).
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 cluster unreachable or
//! key unavailable, 5 input refused (limits, bad input).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use wimpy_client::job::{BackendKind, Job};
use wimpy_client::{Client, ClientError, ComputeRequest};

// The benchmark's clients allocate per request; mimalloc keeps the load
// generator's own cost down.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod local;

/// wimpy: a key-value store for fleets of small machines.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address of the master.
    #[arg(long, env = "WIMPY_MASTER", default_value = "127.0.0.1:7070")]
    master: SocketAddr,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Send requests through the master (proxy mode, with its hot-key cache)
    /// instead of straight to the worker that owns the key.
    #[arg(long)]
    via_master: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum HashName {
    Blake3,
    Sha256,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store a value: from FILE, or standard input if FILE is - or absent.
    Put { key: String, file: Option<PathBuf> },
    /// Print a value, or write it to a file with -o.
    Get {
        key: String,
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Delete a key.
    Del { key: String },
    /// Members, the epoch, and keys and bytes per worker.
    Status,
    /// The ring: which worker owns which share of the key space.
    Ring,
    /// Run image operations on the worker that owns each KEY; the result
    /// goes to -o FILE, under --store-as KEY, or (for one key) to stdout.
    ///
    /// Operations: decode, grayscale, invert, brightness:B[:CONTRAST],
    /// contrast:C, threshold:LEVEL, blur:SIGMA, box-blur:RADIUS,
    /// sharpen[:SIGMA[:AMOUNT]], sobel, conv3:W1,..,W9[/DIV],
    /// conv5:W1,..,W25[/DIV], resize:W:H[:bilinear|lanczos3], crop:X:Y:W:H,
    /// flip:h|v, rotate:90|180|270, encode:png, encode:jpeg[:Q],
    /// blake3[:ROUNDS], sha256[:ROUNDS]. A leading decode is implied; a job
    /// ending on an image is encoded as PNG.
    Compute {
        /// Keys to run the job over (several run as one batch per worker).
        #[arg(required = true)]
        keys: Vec<String>,
        /// One operation; repeat in order.
        #[arg(long = "op", required = true)]
        ops: Vec<String>,
        /// Backend to run on.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Write the result to FILE (one key only).
        #[arg(short = 'o', long = "out", conflicts_with = "store_as")]
        out: Option<PathBuf>,
        /// Store the result under this key (with several keys: under
        /// KEY + this suffix).
        #[arg(long)]
        store_as: Option<String>,
        /// How long the job may run on the worker, in milliseconds.
        #[arg(long)]
        deadline_ms: Option<u64>,
    },
    /// Hash the value at KEY on the worker that owns it.
    Hash {
        key: String,
        #[arg(long, value_enum, default_value_t = HashName::Blake3)]
        algo: HashName,
        /// Hash the digest again, this many times in all.
        #[arg(long, default_value_t = 1)]
        rounds: u32,
        /// Backend to run on.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// The compute backends of every worker.
    Backends,
    /// Have a worker hand its keys to the others and leave the ring.
    Leave { worker_id: u64 },
    /// Run a local cluster: a master on --master and N workers, in the
    /// foreground until Ctrl-C.
    Local {
        /// Number of workers.
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// Where the nodes keep their data.
        #[arg(long, default_value = "wimpy-data")]
        data: PathBuf,
        /// Workers' sync mode: always, interval:MS or never.
        #[arg(long, default_value = "always")]
        sync: String,
    },
    /// Benchmark a cluster: YCSB A-F, the GET/PUT/HASH/PICT mix or compute
    /// jobs, closed loop or at a fixed rate; `bench scale` over cluster
    /// sizes; `bench compute` over backends. Tables, JSON and SVG charts.
    Bench(Box<bench::BenchArgs>),
}

/// A failure and the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        use wimpy_client::ComputeFailureKind as K;
        let code = match &e {
            ClientError::TooLarge { .. } | ClientError::Invalid(_) => 5,
            ClientError::Compute(c) => match c.kind {
                K::BadJob
                | K::BadImage
                | K::EmptyImage
                | K::TooManyPixels
                | K::ValueTooLarge
                | K::CropOutside
                | K::BackendUnavailable => 5,
                K::BackendBusy => 4,
                K::DeadlineExceeded | K::Encode | K::Device => 1,
            },
            e if e.is_unavailable() => 4,
            _ => 1,
        };
        Failure { code, message: e.to_string() }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure { code: 1, message: e.to_string() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Local { workers, data, sync } => local::run(cli.master, *workers, data, sync).map_err(Failure::from),
        // The bench runs its own threads and runtimes.
        Command::Bench(args) => bench::main(args, cli.master, cli.via_master, cli.format),
        _ => {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(&Failure::from(e), cli.format),
            };
            tokio::task::LocalSet::new().block_on(&rt, execute(&cli))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f, cli.format),
    }
}

fn fail(f: &Failure, format: Format) -> ExitCode {
    match format {
        Format::Text => eprintln!("wimpy: {}", f.message),
        Format::Json => println!("{}", json!({"ok": false, "error": f.message, "exit": f.code})),
    }
    ExitCode::from(f.code)
}

async fn execute(cli: &Cli) -> Result<(), Failure> {
    let opts = wimpy_client::ClientOptions { via_master: cli.via_master, ..Default::default() };
    let client = Client::connect_with(cli.master, opts).await?;
    let out = &mut std::io::stdout().lock();
    match &cli.command {
        Command::Put { key, file } => {
            let value = match file.as_deref() {
                None => read_stdin()?,
                Some(p) if p.as_os_str() == "-" => read_stdin()?,
                Some(p) => {
                    std::fs::read(p).map_err(|e| Failure { code: 5, message: format!("{}: {e}", p.display()) })?
                }
            };
            client.put(key.as_bytes(), &value).await?;
            match cli.format {
                Format::Text => writeln!(out, "stored {} ({} bytes)", key, value.len())?,
                Format::Json => writeln!(out, "{}", json!({"ok": true, "key": key, "bytes": value.len()}))?,
            }
        }
        Command::Get { key, out: file } => {
            let Some(value) = client.get(key.as_bytes()).await? else {
                return Err(Failure { code: 3, message: format!("{key}: not found") });
            };
            match (file, cli.format) {
                (Some(p), Format::Text) => {
                    std::fs::write(p, &value)?;
                    writeln!(out, "wrote {} bytes to {}", value.len(), p.display())?;
                }
                (Some(p), Format::Json) => {
                    std::fs::write(p, &value)?;
                    writeln!(out, "{}", json!({"ok": true, "key": key, "bytes": value.len(), "file": p}))?;
                }
                (None, Format::Text) => out.write_all(&value)?,
                (None, Format::Json) => match std::str::from_utf8(&value) {
                    Ok(text) => writeln!(out, "{}", json!({"ok": true, "key": key, "value": text}))?,
                    Err(_) => writeln!(out, "{}", json!({"ok": true, "key": key, "value_hex": hex(&value)}))?,
                },
            }
        }
        Command::Del { key } => {
            if !client.delete(key.as_bytes()).await? {
                return Err(Failure { code: 3, message: format!("{key}: not found") });
            }
            match cli.format {
                Format::Text => writeln!(out, "deleted {key}")?,
                Format::Json => writeln!(out, "{}", json!({"ok": true, "key": key, "deleted": true}))?,
            }
        }
        Command::Status => {
            let (view, joining) = client.status().await?;
            let member = |m: &wimpy_client::Member| {
                json!({"id": m.id, "address": m.address, "state": format!("{:?}", m.state).to_lowercase(),
                       "keys": m.live_keys, "log_bytes": m.log_bytes, "garbage_bytes": m.garbage_bytes,
                       "index_bytes": m.index_bytes})
            };
            match cli.format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!({"epoch": view.ring.epoch(), "members": view.members.iter().map(member).collect::<Vec<_>>(),
                           "joining": joining.iter().map(member).collect::<Vec<_>>()})
                )?,
                Format::Text => {
                    writeln!(out, "epoch {}, {} member(s)", view.ring.epoch(), view.members.len())?;
                    writeln!(
                        out,
                        "{:>4}  {:<22} {:<8} {:>10} {:>12} {:>12}",
                        "id", "address", "state", "keys", "log bytes", "garbage"
                    )?;
                    for m in view.members.iter().chain(joining.iter()) {
                        writeln!(
                            out,
                            "{:>4}  {:<22} {:<8} {:>10} {:>12} {:>12}",
                            m.id,
                            m.address,
                            format!("{:?}", m.state).to_lowercase(),
                            m.live_keys,
                            m.log_bytes,
                            m.garbage_bytes
                        )?;
                    }
                }
            }
        }
        Command::Ring => {
            let view = client.ring();
            let shares = view.ring.shares();
            match cli.format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!({"epoch": view.ring.epoch(), "vnodes": view.ring.vnodes(),
                           "members": view.members.iter().map(|m| json!({"id": m.id, "address": m.address,
                               "share": shares.get(&m.id).copied().unwrap_or(0.0)})).collect::<Vec<_>>()})
                )?,
                Format::Text => {
                    writeln!(out, "epoch {}, {} points per worker", view.ring.epoch(), view.ring.vnodes())?;
                    for m in &view.members {
                        let share = shares.get(&m.id).copied().unwrap_or(0.0) * 100.0;
                        writeln!(out, "{:>4}  {:<22} {:>6.2}% of keys", m.id, m.address, share)?;
                    }
                }
            }
        }
        Command::Leave { worker_id } => {
            client.leave(*worker_id).await?;
            match cli.format {
                Format::Text => writeln!(out, "worker {worker_id} handed its keys over and left the ring")?,
                Format::Json => writeln!(out, "{}", json!({"ok": true, "left": worker_id}))?,
            }
        }
        Command::Compute { keys, ops, backend, out: file, store_as, deadline_ms } => {
            let job = Job::parse(ops).map_err(refused)?;
            let req = ComputeRequest {
                job,
                backend: parse_backend(backend)?,
                deadline: deadline_ms.map(std::time::Duration::from_millis),
            };
            if keys.len() > 1 && file.is_some() {
                return Err(Failure { code: 2, message: "-o FILE takes one key; use --store-as SUFFIX".into() });
            }
            if keys.len() == 1 {
                let key = &keys[0];
                let Some(result) = client.compute(key.as_bytes(), &req).await? else {
                    return Err(Failure { code: 3, message: format!("{key}: not found") });
                };
                let destination = match (file, store_as) {
                    (Some(p), _) => {
                        std::fs::write(p, &result.bytes)?;
                        Some(p.display().to_string())
                    }
                    (None, Some(to)) => {
                        client.put(to.as_bytes(), &result.bytes).await?;
                        Some(format!("key {to}"))
                    }
                    (None, None) => None,
                };
                match (cli.format, &destination) {
                    (Format::Json, _) => {
                        writeln!(out, "{}", compute_json(key, &result, destination.as_deref(), req.job.gives_digest()))?
                    }
                    (Format::Text, Some(to)) => {
                        writeln!(out, "{}", compute_line(key, &result, to))?;
                    }
                    (Format::Text, None) if req.job.gives_digest() => writeln!(out, "{}", hex(&result.bytes))?,
                    (Format::Text, None) => out.write_all(&result.bytes)?,
                }
            } else {
                let key_bytes: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
                let results = client.compute_batch(&key_bytes, &req).await;
                let mut worst: Option<Failure> = None;
                for (key, result) in keys.iter().zip(results) {
                    let line = match result {
                        Ok(Some(r)) => {
                            let to = match store_as {
                                Some(suffix) => {
                                    let to = format!("{key}{suffix}");
                                    client.put(to.as_bytes(), &r.bytes).await?;
                                    Some(format!("key {to}"))
                                }
                                None => None,
                            };
                            match cli.format {
                                Format::Json => {
                                    compute_json(key, &r, to.as_deref(), req.job.gives_digest()).to_string()
                                }
                                Format::Text => compute_line(key, &r, to.as_deref().unwrap_or("(not stored)")),
                            }
                        }
                        Ok(None) => {
                            worst.get_or_insert(Failure { code: 3, message: format!("{key}: not found") });
                            match cli.format {
                                Format::Json => json!({"ok": false, "key": key, "error": "not found"}).to_string(),
                                Format::Text => format!("{key}: not found"),
                            }
                        }
                        Err(e) => {
                            let message = e.to_string();
                            worst.get_or_insert(Failure::from(e));
                            match cli.format {
                                Format::Json => json!({"ok": false, "key": key, "error": message}).to_string(),
                                Format::Text => format!("{key}: {message}"),
                            }
                        }
                    };
                    writeln!(out, "{line}")?;
                }
                if let Some(f) = worst {
                    return Err(f);
                }
            }
        }
        Command::Hash { key, algo, rounds, backend } => {
            let op = match algo {
                HashName::Blake3 => "blake3",
                HashName::Sha256 => "sha256",
            };
            let job = Job::parse(&[format!("{op}:{rounds}")]).map_err(refused)?;
            let req = ComputeRequest { job, backend: parse_backend(backend)?, deadline: None };
            let Some(result) = client.compute(key.as_bytes(), &req).await? else {
                return Err(Failure { code: 3, message: format!("{key}: not found") });
            };
            match cli.format {
                Format::Text => writeln!(out, "{}  {key}", hex(&result.bytes))?,
                Format::Json => writeln!(out, "{}", compute_json(key, &result, None, true))?,
            }
        }
        Command::Backends => {
            let all = client.backends().await?;
            let mut rows = Vec::new();
            for (id, answer) in all {
                match answer {
                    Ok(list) => {
                        for b in list {
                            rows.push((id, b.backend.to_string(), b.device, b.software, None));
                        }
                    }
                    Err(e) => rows.push((id, String::new(), String::new(), false, Some(e.to_string()))),
                }
            }
            match cli.format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!(
                        rows.iter()
                            .map(|(id, b, d, s, e)| json!({"worker": id, "backend": b, "device": d,
                        "software": s, "error": e}))
                            .collect::<Vec<_>>()
                    )
                )?,
                Format::Text => {
                    for (id, b, d, software, e) in rows {
                        match e {
                            Some(e) => writeln!(out, "{id:>4}  unreachable: {e}")?,
                            None => writeln!(
                                out,
                                "{id:>4}  {b:<5} {d}{}",
                                if software { " (software: correct, not fast)" } else { "" }
                            )?,
                        }
                    }
                }
            }
        }
        Command::Local { .. } | Command::Bench(_) => unreachable!("handled in main"),
    }
    Ok(())
}

fn refused(e: impl std::fmt::Display) -> Failure {
    Failure { code: 5, message: e.to_string() }
}

fn parse_backend(name: &str) -> Result<Option<BackendKind>, Failure> {
    if name == "auto" {
        return Ok(None);
    }
    name.parse().map(Some).map_err(|e: wimpy_client::job::UnknownBackend| Failure { code: 2, message: e.to_string() })
}

fn compute_json(key: &str, r: &wimpy_client::ComputeOutput, stored: Option<&str>, digest: bool) -> serde_json::Value {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut v = json!({
        "ok": true, "key": key, "bytes": r.bytes.len(), "backend": r.backend.to_string(), "device": r.device,
        "software": r.software,
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

fn compute_line(key: &str, r: &wimpy_client::ComputeOutput, to: &str) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let size = r.size.map(|(w, h)| format!("{w}x{h}, ")).unwrap_or_default();
    format!(
        "{key}: {size}{} bytes to {to} on {} ({}{}): decode {:.1} ms, upload {:.1}, kernel {:.1}, download {:.1}, encode {:.1}",
        r.bytes.len(),
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

fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut v = Vec::new();
    std::io::stdin().read_to_end(&mut v)?;
    Ok(v)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
