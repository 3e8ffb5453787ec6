//! `wimpy bench`: load against a cluster, with figures people can check.
//!
//! - `wimpy bench`: a workload (YCSB A–F, the Pi project's mix, or compute
//!   only) at one or more client counts, closed loop or at a fixed rate;
//! - `wimpy bench scale --workers 1,2,3`: the same on local clusters of
//!   each size;
//! - `wimpy bench compute --backends ...`: each image operation on each
//!   backend, through the service, with the workers' stage times.
//!
//! Each prints tables, and writes every figure as JSON (`--json`) and
//! charts as SVG (`--plot DIR`).

mod compute;
mod energy;
mod failover;
mod pace;
mod picture;
mod plot;
mod record;
mod repair;
mod report;
mod run;
mod workload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use wimpy_client::job::{BackendKind, Job};
use wimpy_client::{Client, MemberState};
use wimpy_net::Security;

use crate::emulate::Emulation;
use crate::failure::Failure;
use crate::files;
use crate::local::{LocalCluster, NodeSettings};
use crate::{Format, Global};
use pace::Pace;
use run::{ClientSetup, Connections, Phase, Plan, Target};
use workload::{Distribution, Mix, Preset};

/// What `wimpy bench --help` shows after the flags.
pub const EXAMPLES: &str = "Examples:
  wimpy bench --local 3 --workload a --clients 1,8,50 --plot bench-plots
  wimpy bench --local 3 --mix get=50,put=20,hash=20,pict=10 --rate 2000
  wimpy bench --workload c --duration 30s --json figures.json    # the cluster at --master
  wimpy bench scale --workers 1,2,3 --workload c
  wimpy bench compute --local 1 --backends cpu,simd,gles,wgpu
  wimpy bench repair --workers 4 --mb 64
  wimpy bench failover --workers 3 --clients 16";

/// `wimpy bench` and its subcommands.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    workload: WorkloadArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// The same workload on local clusters of each size: throughput against
    /// workers.
    #[command(
        after_help = "Examples:\n  wimpy bench scale --workers 1,2,3 --workload c\n  wimpy bench scale --workers 1,3 --mix get=90,put=10 --sync never --json scale.json"
    )]
    Scale {
        /// Cluster sizes to run, e.g. 1,2,3.
        #[arg(long, value_delimiter = ',', required = true)]
        workers: Vec<usize>,
        /// Workers' sync mode: always, interval:MS or never.
        #[arg(long, default_value = "always")]
        sync: String,
        /// Run each cluster as an emulated fleet (as `wimpy local
        /// --emulate`): each node's CPU capped, so that the cluster's
        /// throughput is its workers' and not this machine's cores.
        #[arg(long, value_name = "CPU[,LATENCY]", value_parser = Emulation::parse)]
        emulate: Option<Emulation>,
        #[command(flatten)]
        workload: WorkloadArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Each image operation on each backend, through the service, with the
    /// stage times the worker reports.
    #[command(
        after_help = "Examples:\n  wimpy bench compute --local 1 --backends cpu,simd,gles,wgpu\n  wimpy bench compute --local 1 --image photo.jpg --op blur:4 --op sobel --runs 5"
    )]
    Compute(ComputeArgs),
    /// How fast a killed worker's chains get their copies back once it is
    /// removed (a local cluster keeping three copies), beside how fast this
    /// machine's disk writes in sequence.
    #[command(
        after_help = "Examples:\n  wimpy bench repair\n  wimpy bench repair --workers 5 --mb 256 --repair-mb-s 8 --json repair.json"
    )]
    Repair(repair::RepairArgs),
    /// What writers see while a worker dies: latency before and after a
    /// kill -9 of one worker of a local three-copy cluster, and the time
    /// until the chains it headed take writes again.
    #[command(
        after_help = "Examples:\n  wimpy bench failover\n  wimpy bench failover --workers 4 --clients 32 --after 10s --json failover.json"
    )]
    Failover(failover::FailoverArgs),
}

/// What `wimpy bench compute` runs.
#[derive(Args, Debug)]
struct ComputeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Backends to compare.
    #[arg(long, value_delimiter = ',', default_value = "cpu,simd,gles,wgpu")]
    backends: Vec<String>,
    /// Operations to time, one job each (repeat; default: grayscale,
    /// blur:2, sobel, conv3 sharpen, a half-size Lanczos3 resize, blake3).
    #[arg(long = "op")]
    ops: Vec<String>,
    /// The picture to run on, - for standard input (default: a generated
    /// one of --picture-size).
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// Size of the generated picture.
    #[arg(long, default_value = "1920x1080")]
    picture_size: String,
    /// Timed runs per operation and backend (after one warm-up).
    #[arg(long, default_value_t = 10)]
    runs: u32,
    /// Also save the picture used to FILE, - for standard output (to run
    /// peers on the same one).
    #[arg(long, value_name = "FILE")]
    save_picture: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

/// Which cluster to load.
#[derive(Args, Debug, Clone)]
struct ClusterArgs {
    /// Start a local cluster of N workers for the run (on a free port, data
    /// in a temporary directory) instead of using --master.
    #[arg(long, value_name = "N")]
    local: Option<usize>,
    /// The local cluster's sync mode: always, interval:MS or never.
    #[arg(long, default_value = "always", requires = "local")]
    sync: String,
    /// Copies of each key the local cluster keeps (chain replication).
    /// [default: as wimpy local: 3, or the number of workers if fewer]
    #[arg(long, requires = "local", value_parser = clap::value_parser!(u32).range(1..=i64::from(wimpy_client::MAX_REPLICAS)))]
    replicas: Option<u32>,
    /// Run the local cluster as an emulated fleet (as `wimpy local
    /// --emulate`); with LATENCY, the bench's clients receive that late too.
    #[arg(long, value_name = "CPU[,LATENCY]", requires = "local", value_parser = Emulation::parse)]
    emulate: Option<Emulation>,
}

impl ClusterArgs {
    /// Copies of each key a local cluster of `workers` keeps.
    fn copies(&self, workers: usize) -> u32 {
        self.replicas.unwrap_or_else(|| crate::local::default_replicas(workers))
    }
}

/// What the clients do.
#[derive(Args, Debug, Clone)]
struct WorkloadArgs {
    /// a–f (YCSB core workloads), mix (the Pi project's GET/PUT/HASH/PICT
    /// mix) or compute (the --op pipeline over stored pictures).
    #[arg(long, default_value = "a")]
    workload: String,
    /// Operation weights, e.g. get=50,put=20,hash=20,pict=10 (implies
    /// --workload mix). Operations: read update insert scan rmw get put hash
    /// pict compute.
    #[arg(long)]
    mix: Option<String>,
    /// Key distribution: uniform, zipfian (0.99) or latest (default: the
    /// workload's own).
    #[arg(long)]
    distribution: Option<String>,
    /// Records loaded before the run.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Longest scan (workload e), in records.
    #[arg(long, default_value_t = 100)]
    scan_max: u64,
    /// Pictures stored for pict and compute operations.
    #[arg(long, default_value_t = 16)]
    pictures: u64,
    /// Size of those pictures.
    #[arg(long, default_value = "640x480")]
    picture_size: String,
    /// The image pipeline of pict and compute operations; repeat in order.
    #[arg(long = "op", default_values_t = ["blur:2".to_string()])]
    ops: Vec<String>,
    /// Concurrent clients; a list runs once per count (1,8,50).
    #[arg(long, value_delimiter = ',', default_value = "50")]
    clients: Vec<usize>,
    /// Threads the clients are spread over (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Send at this many operations per second in all (latency counted from
    /// each one's intended send time) instead of closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// How long each run lasts: 10, 10s, 500ms, 2m.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Skip storing records and pictures (they are there from a former run).
    #[arg(long)]
    no_load: bool,
    /// How clients reach the cluster: shared (the clients of one thread
    /// share one SDK client, as an application's tasks do) or per-client
    /// (each client opens its own connections, as redis-benchmark's and
    /// memtier's clients do).
    #[arg(long, value_enum, default_value_t = Connections::Shared)]
    connections: Connections,
    /// One message per request, even when several requests to one worker
    /// are in flight at once (the SDK batches them by default).
    #[arg(long)]
    no_batching: bool,
}

impl WorkloadArgs {
    /// How the clients connect.
    fn setup(&self) -> ClientSetup {
        ClientSetup { connections: self.connections, batching: !self.no_batching }
    }

    /// Where the clients send their load, and how.
    fn target(&self, cluster: &Cluster, via_master: bool) -> Target {
        Target { master: cluster.master, via_master, setup: self.setup(), security: cluster.security.clone() }
    }
}

/// Where figures go besides the terminal.
#[derive(Args, Debug, Clone)]
struct OutputArgs {
    /// Write every figure, with the HDR histograms, to this JSON file (- for
    /// standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write charts (SVG) into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Checks a sync mode as the workers take it: always, never or interval:MS.
fn check_sync(mode: &str) -> Result<(), Failure> {
    let ok = match mode.strip_prefix("interval:") {
        Some(ms) => ms.parse::<u64>().is_ok_and(|ms| ms > 0),
        None => mode == "always" || mode == "never",
    };
    if ok { Ok(()) } else { Err(Failure::usage(format!("--sync {mode:?}: use always, never or interval:MS"))) }
}

/// Parses `10`, `10s`, `500ms`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = number.parse().map_err(|_| format!("{s:?}: write a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    if !(seconds > 0.0 && seconds < 86_400.0) {
        return Err(format!("{s:?}: a run lasts more than 0 and less than a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl WorkloadArgs {
    fn preset(&self) -> Result<Preset, Failure> {
        if let Some(mix) = &self.mix {
            return Ok(Preset::pi_mix(Mix::parse(mix).map_err(Failure::usage)?));
        }
        let name = self.workload.to_ascii_lowercase();
        let name = name.strip_prefix("ycsb-").unwrap_or(&name);
        match name {
            "mix" => Ok(Preset::pi_mix(Mix::parse("get=50,put=20,hash=20,pict=10").expect("valid mix"))),
            "compute" => Ok(Preset::compute()),
            _ => {
                let mut chars = name.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Preset::ycsb(c),
                    _ => None,
                }
                .ok_or_else(|| Failure::usage(format!("unknown workload {:?}; use a-f, mix or compute", self.workload)))
            }
        }
    }

    /// The plan, with every setting checked before any cluster is touched.
    fn plan(&self) -> Result<(String, Plan), Failure> {
        self.pace()?;
        self.clients()?;
        parse_duration(&self.duration).map_err(Failure::usage)?;
        let preset = self.preset()?;
        let distribution = match &self.distribution {
            Some(d) => d.parse::<Distribution>().map_err(Failure::usage)?,
            None => preset.distribution,
        };
        let pipeline = Job::parse(&self.ops).map_err(|e| Failure::refused(format!("--op: {e}")))?;
        if self.records == 0 && preset.mix.parts().iter().any(|(k, _)| !k.needs_pictures()) {
            return Err(Failure::usage("--records must be at least 1 for this workload"));
        }
        if self.pictures == 0 && preset.mix.parts().iter().any(|(k, _)| k.needs_pictures()) {
            return Err(Failure::usage("--pictures must be at least 1 for this workload"));
        }
        let plan = Plan {
            mix: preset.mix,
            distribution,
            records: self.records,
            value_size: self.value_size,
            pictures: self.pictures,
            picture_size: picture::parse_size(&self.picture_size).map_err(Failure::usage)?,
            pipeline,
            hash: Job::parse(&["blake3"]).expect("a valid job"),
            scan_max: self.scan_max.max(1),
        };
        Ok((preset.name, plan))
    }

    fn pace(&self) -> Result<Pace, Failure> {
        match self.rate {
            None => Ok(Pace::ClosedLoop),
            Some(r) if pace::RATE_RANGE.contains(&r) => Ok(Pace::FixedRate(r)),
            Some(r) => Err(Failure::usage(format!(
                "--rate {r}: give operations per second from {} to {}",
                pace::RATE_RANGE.start(),
                pace::RATE_RANGE.end()
            ))),
        }
    }

    fn clients(&self) -> Result<Vec<usize>, Failure> {
        if self.clients.is_empty() || self.clients.contains(&0) {
            return Err(Failure::usage("--clients: give counts of 1 or more"));
        }
        Ok(self.clients.clone())
    }

    fn threads(&self, clients: usize) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, clients)
    }
}

fn plan_json(name: &str, plan: &Plan) -> Value {
    json!({
        "name": name,
        "mix": plan.mix.parts().iter().map(|(k, w)| (k.name().to_owned(), json!(w))).collect::<serde_json::Map<_, _>>(),
        "distribution": plan.distribution.name(),
        "zipfian_constant": workload::ZIPFIAN_CONSTANT,
        "records": plan.records,
        "value_size": plan.value_size,
        "scan_max": plan.scan_max,
        "pictures": plan.pictures,
        "picture_size": [plan.picture_size.0, plan.picture_size.1],
        "pipeline": plan.pipeline.ops().iter().map(|o| o.to_string()).collect::<Vec<_>>(),
    })
}

fn describe_plan(name: &str, plan: &Plan) -> String {
    let mix: Vec<String> =
        plan.mix.parts().iter().map(|(k, _)| format!("{k} {:.0}%", plan.mix.share(*k) * 100.0)).collect();
    let mut s = format!("workload {name} ({}), {} keys", mix.join(", "), plan.distribution.name());
    if plan.uses_records() {
        s += &format!(", {} records of {} B", plan.records, plan.value_size);
    }
    if plan.uses_pictures() {
        let ops: Vec<String> = plan.pipeline.ops().iter().map(|o| o.to_string()).collect();
        s += &format!(
            ", {} pictures of {}x{} through {}",
            plan.pictures,
            plan.picture_size.0,
            plan.picture_size.1,
            ops.join(",")
        );
    }
    s
}

/// A cluster for the run: a local one (kept alive by the returned guard)
/// or the one at `--master`.
struct Cluster {
    master: SocketAddr,
    workers: usize,
    /// How clients reach it: TLS as a local cluster's operator (or as the
    /// tool's credentials say), or insecure.
    security: Security,
    local: Option<(LocalCluster, tempfile::TempDir)>,
}

impl Cluster {
    /// The local cluster's nodes and data directory, if it is one.
    fn local_mut(&mut self) -> Option<(&mut LocalCluster, &Path)> {
        self.local.as_mut().map(|(local, dir)| (local, dir.path()))
    }

    fn json(&self, via_master: bool, sync: Option<&str>) -> Value {
        json!({
            "master": self.master.to_string(),
            "workers": self.workers,
            "local": self.local.is_some(),
            "sync": sync,
            "route": if via_master { "via-master" } else { "direct" },
            "tls": matches!(self.security, Security::Tls(_)),
        })
    }
}

fn free_port() -> Result<u16, Failure> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Failure::trouble(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| Failure::trouble(e.to_string()))?.port())
}

/// Settings for a bench's local cluster: quiet, and as `wimpy local`
/// otherwise.
fn bench_nodes(sync: &str, replicas: u32, emulate: Option<Emulation>, insecure: bool) -> NodeSettings {
    NodeSettings { sync: sync.to_owned(), replicas, repair_mb_s: None, quiet: true, insecure, emulate }
}

/// Starts a local cluster of `workers` run as `settings` say, with data in
/// a temporary directory, and waits until they all serve.
fn start_local(workers: usize, settings: NodeSettings) -> Result<Cluster, Failure> {
    if workers == 0 {
        return Err(Failure::usage("a local cluster needs at least one worker"));
    }
    let dir = tempfile::Builder::new()
        .prefix("wimpy-bench-")
        .tempdir()
        .map_err(|e| Failure::trouble(format!("a data directory: {e}")))?;
    let master: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    if let Some(e) = settings.emulate {
        // The clients' side of each link is as slow as the nodes'.
        wimpy_net::delay::set_receive_delay(e.latency);
    }
    let local =
        LocalCluster::start(master, workers, dir.path(), settings).map_err(|e| Failure::trouble(e.to_string()))?;
    let security = local.client_security().map_err(|e| Failure::trouble(e.to_string()))?;
    on_runtime(wait_serving(master, &security, workers, Duration::from_secs(60)))?;
    Ok(Cluster { master, workers: local.workers(), security, local: Some((local, dir)) })
}

/// The cluster at `master`, which must have serving workers.
fn existing(master: SocketAddr, security: Security) -> Result<Cluster, Failure> {
    let workers = on_runtime(async {
        let client = tokio::time::timeout(Duration::from_secs(15), Client::connect(master, security.clone()))
            .await
            .map_err(|_| Failure::unavailable(format!("no answer from the master at {master}")))??;
        let n = client.ring().members.iter().filter(|m| m.state == MemberState::Serving).count();
        if n == 0 {
            return Err(Failure::unavailable(format!("the cluster at {master} has no serving workers")));
        }
        Ok(n)
    })?;
    Ok(Cluster { master, workers, security, local: None })
}

fn cluster_for(args: &ClusterArgs, global: &Global) -> Result<Cluster, Failure> {
    match args.local {
        Some(n) => {
            check_sync(&args.sync)?;
            start_local(n, bench_nodes(&args.sync, args.copies(n), args.emulate, global.insecure))
        }
        None => existing(global.master, global.security()?),
    }
}

/// Polls the master until `n` workers serve.
async fn wait_serving(master: SocketAddr, security: &Security, n: usize, limit: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match serving_workers(master, security).await {
            Ok(serving) if serving >= n => return Ok(()),
            Ok(serving) => last = format!("{serving} of {n} workers serving"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Failure::unavailable(format!("the local cluster did not come up within {limit:?}: {last}")))
}

/// How many workers the master at `master` counts as serving; each step
/// bounded, so a master that is not up yet cannot hang the caller.
async fn serving_workers(master: SocketAddr, security: &Security) -> Result<usize, String> {
    let limit = Duration::from_secs(5);
    let client = tokio::time::timeout(limit, Client::connect(master, security.clone()))
        .await
        .map_err(|_| "the master did not answer".to_string())?
        .map_err(|e| e.to_string())?;
    let view = tokio::time::timeout(limit, client.status())
        .await
        .map_err(|_| "the master did not answer".to_string())?
        .map_err(|e| e.to_string())?
        .view;
    Ok(view.members.iter().filter(|m| m.state == MemberState::Serving).count())
}

/// Runs a future on a current-thread runtime with a `LocalSet` (capnp-rpc's
/// clients are not `Send`).
fn on_runtime<T>(f: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::trouble(format!("a runtime: {e}")))?;
    tokio::task::LocalSet::new().block_on(&rt, f)
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes the JSON file and prints the JSON when asked.
fn finish(doc: &Value, output: &OutputArgs, format: Format) -> Result<(), Failure> {
    if let Some(path) = &output.json {
        let text = serde_json::to_string_pretty(doc).expect("a JSON value");
        files::write_output(path, (text + "\n").as_bytes())?;
        if format == Format::Text && !files::is_std(path) {
            println!("figures written to {}", path.display());
        }
    }
    if format == Format::Json {
        println!("{doc}");
    }
    Ok(())
}

fn plot_dir(output: &OutputArgs) -> Result<Option<&Path>, Failure> {
    match &output.plot {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Failure::trouble(format!("{}: {e}", dir.display())))?;
            Ok(Some(dir))
        }
        None => Ok(None),
    }
}

fn say(format: Format, text: &str) {
    if format == Format::Text {
        print!("{text}");
    }
}

/// `wimpy bench ...`.
pub fn main(args: &BenchArgs, global: &Global) -> Result<(), Failure> {
    let format = global.format;
    match &args.command {
        None => bench_workload(&args.cluster, &args.workload, &args.output, global),
        Some(BenchCommand::Scale { workers, sync, emulate, workload, output }) => {
            bench_scale(workers, sync, *emulate, workload, output, global)
        }
        Some(BenchCommand::Compute(spec)) => bench_compute(spec, global, format),
        Some(BenchCommand::Repair(spec)) => repair::bench_repair(spec, global),
        Some(BenchCommand::Failover(spec)) => failover::bench_failover(spec, global),
    }
}

/// Runs the workload at each client count against one cluster.
fn run_phases(
    target: &Target,
    plan: &Arc<Plan>,
    w: &WorkloadArgs,
    format: Format,
) -> Result<(Option<run::Loaded>, Vec<Phase>), Failure> {
    let duration = parse_duration(&w.duration).map_err(Failure::usage)?;
    let pace = w.pace()?;
    let clients = w.clients()?;
    let loaded = if w.no_load {
        None
    } else {
        // As many loading threads as the runs use, however many clients.
        let l = run::load(target, plan, w.threads(usize::MAX))?;
        say(format, &format!("loaded {} records and {} pictures in {:.1} s\n", l.records, l.pictures, l.seconds));
        Some(l)
    };
    // One count of records over every phase: inserts of one phase are
    // there for the next.
    let records = Arc::new(run::Records::new(plan.records));
    let mut phases = Vec::new();
    for &c in &clients {
        let phase =
            run::run_phase(target, plan, &records, c, w.threads(c), pace, duration).map_err(Failure::unavailable)?;
        say(format, &report::phase_text(&phase));
        phases.push(phase);
    }
    Ok((loaded, phases))
}

fn loaded_json(l: Option<run::Loaded>) -> Value {
    match l {
        Some(l) => json!({"records": l.records, "pictures": l.pictures, "seconds": l.seconds}),
        None => json!(null),
    }
}

/// Latency CDFs of one phase: one line per operation type.
fn cdf_chart(dir: &Path, name: &str, title: &str, phase: &Phase) -> Result<PathBuf, Failure> {
    let path = dir.join(name);
    let series: Vec<(String, &hdrhistogram::Histogram<u64>)> =
        phase.recorder.ops().iter().map(|(k, s)| (k.name().to_owned(), &s.latency)).collect();
    plot::latency_cdf(&path, title, &series).map_err(Failure::trouble)?;
    Ok(path)
}

fn bench_workload(
    cluster_args: &ClusterArgs,
    w: &WorkloadArgs,
    output: &OutputArgs,
    global: &Global,
) -> Result<(), Failure> {
    let (format, via_master) = (global.format, global.via_master);
    let (name, plan) = w.plan()?;
    let plan = Arc::new(plan);
    let cluster = cluster_for(cluster_args, global)?;
    let target = w.target(&cluster, via_master);
    say(
        format,
        &format!(
            "{}\ncluster: {} worker(s) at {}{}, {}; {}\n",
            describe_plan(&name, &plan),
            cluster.workers,
            cluster.master,
            if cluster.local.is_some() {
                format!(
                    " (local, sync {}, {} per key)",
                    cluster_args.sync,
                    copies(cluster_args.copies(cluster.workers))
                )
            } else {
                String::new()
            },
            if via_master { "through the master" } else { "straight to the owners" },
            target.setup.describe(),
        ),
    );
    let (loaded, phases) = run_phases(&target, &plan, w, format)?;
    let mut charts = Vec::new();
    if let Some(dir) = plot_dir(output)? {
        for p in &phases {
            let title = format!("{name}: latency, {} clients, {} workers", p.clients, cluster.workers);
            charts.push(cdf_chart(dir, &format!("latency-cdf-{}-clients.svg", p.clients), &title, p)?);
        }
        let path = dir.join("throughput-vs-clients.svg");
        let mut series =
            vec![("all".to_owned(), phases.iter().map(|p| (p.clients as f64, p.ops_per_second())).collect())];
        if plan.mix.parts().len() > 1 {
            for (k, _) in plan.mix.parts() {
                let points = phases
                    .iter()
                    .map(|p| {
                        (p.clients as f64, p.recorder.ops().get(k).map_or(0, |s| s.latency.len()) as f64 / p.seconds)
                    })
                    .collect();
                series.push((k.name().to_owned(), points));
            }
        }
        plot::lines(&path, &format!("{name}: throughput against clients"), "clients", "operations per second", &series)
            .map_err(Failure::trouble)?;
        charts.push(path);
    }
    let doc = json!({
        "tool": "wimpy bench", "version": env!("CARGO_PKG_VERSION"), "started_unix": unix_seconds(),
        "cluster": cluster.json(via_master, cluster.local.as_ref().map(|_| cluster_args.sync.as_str())),
        "clients": target.setup.json(),
        "workload": plan_json(&name, &plan),
        "load": loaded_json(loaded),
        "runs": phases.iter().map(report::phase_json).collect::<Vec<_>>(),
        "charts": charts,
    });
    if !charts.is_empty() && format == Format::Text {
        println!("charts: {}", charts.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    finish(&doc, output, format)?;
    every_phase_served(&phases)
}

/// A run in which no operation succeeded measured nothing: say so with a
/// failing exit code (the figures are written all the same).
fn every_phase_served<'a>(phases: impl IntoIterator<Item = &'a Phase>) -> Result<(), Failure> {
    for p in phases {
        if p.recorder.succeeded() == 0 {
            let errors: Vec<String> =
                p.recorder.ops().values().flat_map(|s| s.errors.iter().map(|(k, n)| format!("{k} x{n}"))).collect();
            return Err(Failure::trouble(format!(
                "no operation succeeded with {} clients ({})",
                p.clients,
                if errors.is_empty() { "none was sent".to_owned() } else { errors.join(", ") }
            )));
        }
    }
    Ok(())
}

fn bench_scale(
    sizes: &[usize],
    sync: &str,
    emulate: Option<Emulation>,
    w: &WorkloadArgs,
    output: &OutputArgs,
    global: &Global,
) -> Result<(), Failure> {
    let (format, via_master) = (global.format, global.via_master);
    if sizes.is_empty() || sizes.contains(&0) {
        return Err(Failure::usage("--workers: give cluster sizes of 1 or more"));
    }
    check_sync(sync)?;
    let (name, plan) = w.plan()?;
    let plan = Arc::new(plan);
    say(
        format,
        &format!(
            "{}\nlocal clusters of {:?} workers (sync {sync}) on this machine: {}\n",
            describe_plan(&name, &plan),
            sizes,
            match emulate {
                Some(e) => format!("an emulated fleet, {e}"),
                None => format!("they share its {} cores", std::thread::available_parallelism().map_or(1, |n| n.get())),
            }
        ),
    );
    let mut rows = Vec::new();
    for &n in sizes {
        say(format, &format!("== {n} worker(s)\n"));
        let cluster = start_local(n, bench_nodes(sync, 1, emulate, global.insecure))?;
        let target = w.target(&cluster, via_master);
        // Every cluster starts empty, so each loads its own records.
        let w = WorkloadArgs { no_load: false, ..w.clone() };
        let (loaded, phases) = run_phases(&target, &plan, &w, format)?;
        drop(cluster);
        rows.push((n, loaded, phases));
    }
    let mut table =
        format!("{:>8} {:>8} {:>12} {:>9} {:>9} {:>8}\n", "workers", "clients", "ops/s", "p50 ms", "p99 ms", "errors");
    for (n, _, phases) in &rows {
        for p in phases {
            let all = p.recorder.overall();
            let q = |x| if all.is_empty() { 0.0 } else { all.value_at_quantile(x) as f64 / 1e3 };
            table += &format!(
                "{n:>8} {:>8} {:>12.0} {:>9.2} {:>9.2} {:>8}\n",
                p.clients,
                p.ops_per_second(),
                q(0.5),
                q(0.99),
                p.recorder.failed()
            );
        }
    }
    say(format, &table);
    let mut charts = Vec::new();
    if let Some(dir) = plot_dir(output)? {
        let clients = w.clients()?;
        let series: Vec<(String, Vec<(f64, f64)>)> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let points = rows.iter().map(|(n, _, phases)| (*n as f64, phases[i].ops_per_second())).collect();
                (format!("{c} clients"), points)
            })
            .collect();
        let path = dir.join("throughput-vs-workers.svg");
        plot::lines(&path, &format!("{name}: throughput against workers"), "workers", "operations per second", &series)
            .map_err(Failure::trouble)?;
        charts.push(path);
        if let Some((n, _, phases)) = rows.last()
            && let Some(p) = phases.last()
        {
            let title = format!("{name}: latency, {} clients, {n} workers", p.clients);
            charts.push(cdf_chart(dir, &format!("latency-cdf-{n}-workers.svg"), &title, p)?);
        }
    }
    let doc = json!({
        "tool": "wimpy bench scale", "version": env!("CARGO_PKG_VERSION"), "started_unix": unix_seconds(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "sync": sync, "route": if via_master { "via-master" } else { "direct" },
        "emulate": emulate.map(|e| json!({"cpu": e.cpu, "latency_us": e.latency.as_micros() as u64})),
        "clients": w.setup().json(),
        "workload": plan_json(&name, &plan),
        "scale": rows.iter().map(|(n, loaded, phases)| json!({
            "workers": n, "load": loaded_json(*loaded),
            "runs": phases.iter().map(report::phase_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "charts": charts,
    });
    finish(&doc, output, format)?;
    every_phase_served(rows.iter().flat_map(|(_, _, phases)| phases))
}

/// The key the compute benchmark stores its picture under.
const COMPUTE_PICTURE_KEY: &str = "bench-compute-picture";

fn bench_compute(spec: &ComputeArgs, global: &Global, format: Format) -> Result<(), Failure> {
    let (cluster_args, output) = (&spec.cluster, &spec.output);
    let backends: Vec<BackendKind> = spec
        .backends
        .iter()
        .map(|b| b.parse::<BackendKind>().map_err(|e| Failure::usage(e.to_string())))
        .collect::<Result<_, _>>()?;
    if backends.is_empty() {
        return Err(Failure::usage("--backends: name at least one backend"));
    }
    let (bytes, (w, h)) = match &spec.image {
        Some(path) => {
            let bytes = files::read_input(path)?;
            let size = image::ImageReader::new(std::io::Cursor::new(&bytes))
                .with_guessed_format()
                .ok()
                .and_then(|r| r.into_dimensions().ok())
                .ok_or_else(|| Failure::refused(format!("{}: not a PNG or JPEG picture", path.display())))?;
            (bytes, size)
        }
        None => {
            let size = picture::parse_size(&spec.picture_size).map_err(Failure::usage)?;
            (picture::png(42, size.0, size.1).map_err(Failure::trouble)?, size)
        }
    };
    if let Some(path) = &spec.save_picture {
        files::write_output(path, &bytes)?;
    }
    let ops = if spec.ops.is_empty() {
        vec![
            "grayscale".to_owned(),
            "blur:2".to_owned(),
            "sobel".to_owned(),
            "conv3:0,-1,0,-1,5,-1,0,-1,0".to_owned(),
            format!("resize:{}:{}:lanczos3", (w / 2).max(1), (h / 2).max(1)),
            "blake3".to_owned(),
        ]
    } else {
        spec.ops.clone()
    };
    for op in &ops {
        Job::parse(std::slice::from_ref(op)).map_err(|e| Failure::refused(format!("--op {op}: {e}")))?;
    }
    let cluster = cluster_for(cluster_args, global)?;
    let pixels = u64::from(w) * u64::from(h);
    say(
        format,
        &format!(
            "compute: {} op(s) x {} backend(s) on a {w}x{h} picture ({} bytes), {} runs each, worker that owns it\n",
            ops.len(),
            backends.len(),
            bytes.len(),
            spec.runs
        ),
    );
    let total = (ops.len() * backends.len()) as u64 * u64::from(spec.runs.max(1));
    let bar = indicatif::ProgressBar::new(total);
    let (cells, owner_backends) = on_runtime(async {
        let client = Client::connect(cluster.master, cluster.security.clone()).await?;
        client.put(COMPUTE_PICTURE_KEY.as_bytes(), &bytes).await?;
        let cells = compute::measure(&client, COMPUTE_PICTURE_KEY, &ops, &backends, spec.runs, || bar.inc(1))
            .await
            .map_err(Failure::refused)?;
        let listed = client.backends().await?;
        Ok((cells, listed))
    })?;
    bar.finish_and_clear();
    say(format, &compute::cells_text(&cells, pixels, bytes.len() as u64));
    let mut charts = Vec::new();
    if let Some(dir) = plot_dir(output)? {
        let path = dir.join("compute-stages.svg");
        plot::stacked_bars(
            &path,
            &format!("compute on a {w}x{h} picture: mean time per stage"),
            "milliseconds",
            &compute::STAGES,
            &compute::cells_bars(&cells),
        )
        .map_err(Failure::trouble)?;
        charts.push(path);
    }
    let workers: Vec<Value> = owner_backends
        .iter()
        .map(|(id, list)| match list {
            Ok(list) => json!({"worker": id, "backends": list.iter().map(|b| json!({
                "backend": b.backend.to_string(), "device": b.device, "software": b.software})).collect::<Vec<_>>()}),
            Err(e) => json!({"worker": id, "error": e.to_string()}),
        })
        .collect();
    let doc = json!({
        "tool": "wimpy bench compute", "version": env!("CARGO_PKG_VERSION"), "started_unix": unix_seconds(),
        "cluster": cluster.json(false, cluster.local.as_ref().map(|_| cluster_args.sync.as_str())),
        "workers": workers,
        "picture": {"width": w, "height": h, "bytes": bytes.len(),
                    "source": spec.image.as_ref().map_or("generated".to_owned(), |p| p.display().to_string())},
        "runs_per_cell": spec.runs,
        "cells": compute::cells_json(&cells, pixels, bytes.len() as u64),
        "charts": charts,
    });
    finish(&doc, output, format)
}

/// "1 copy", "3 copies".
fn copies(n: u32) -> String {
    if n == 1 { "1 copy".into() } else { format!("{n} copies") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
