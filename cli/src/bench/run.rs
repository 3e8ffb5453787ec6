//! Running a workload: the load phase (records and pictures stored), then
//! timed phases of N clients spread over threads. capnp-rpc is
//! single-threaded, so each thread runs a current-thread runtime with its
//! clients on one `LocalSet`. The clients of a thread share one SDK client
//! (and so its connections and batches), as the tasks of an application
//! do, or each opens its own connections, as memtier's and
//! redis-benchmark's clients do.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use wimpy_client::job::Job;
use wimpy_client::{BatchStats, Client, ClientError, ClientOptions, ComputeRequest};
use wimpy_net::Security;

use super::energy::Rapl;
use super::pace::{Operator, Pace, Pacer, drive};
use super::record::{Outcome, Recorder};
use super::workload::{Distribution, KeyChooser, Mix, OpKind, picture_key, record_key};
use crate::failure::Failure;

/// Where the load goes.
#[derive(Clone, Debug)]
pub struct Target {
    pub master: SocketAddr,
    /// Through the master's proxy instead of straight to the owners.
    pub via_master: bool,
    pub setup: ClientSetup,
    pub security: Security,
}

/// Whose connections a bench client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Connections {
    /// One SDK client per thread, shared by the thread's clients.
    Shared,
    /// One SDK client, with its own connections, per bench client.
    PerClient,
}

/// How bench clients connect.
#[derive(Clone, Copy, Debug)]
pub struct ClientSetup {
    pub connections: Connections,
    /// Whether the SDK sends concurrent requests to a worker as batches.
    pub batching: bool,
}

impl ClientSetup {
    pub fn describe(&self) -> String {
        format!(
            "{}, {}",
            match self.connections {
                Connections::Shared => "clients of a thread share its connections",
                Connections::PerClient => "every client has its own connections",
            },
            if self.batching { "requests in flight to a worker go as batches" } else { "one message per request" }
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "connections": match self.connections { Connections::Shared => "shared", Connections::PerClient => "per-client" },
            "batching": self.batching,
        })
    }
}

impl Target {
    async fn connect(&self) -> Result<Client, ClientError> {
        let opts = ClientOptions {
            via_master: self.via_master,
            batching: self.setup.batching,
            ..ClientOptions::new(self.security.clone())
        };
        Client::connect_with(self.master, opts).await
    }

    /// A client connected to the master and, routing straight to the
    /// owners, to every worker, so that no connection is opened inside the
    /// timed run.
    async fn connect_everywhere(&self) -> Result<Rc<Client>, String> {
        let client = within(CONNECT_LIMIT, self.connect()).await?;
        if !self.via_master {
            within(CONNECT_LIMIT, open_every_worker(&client)).await?;
        }
        Ok(Rc::new(client))
    }
}

/// What the clients do, fixed for a whole benchmark.
#[derive(Clone, Debug)]
pub struct Plan {
    pub mix: Mix,
    pub distribution: Distribution,
    /// Records loaded before the timed phases.
    pub records: u64,
    pub value_size: usize,
    /// Pictures stored for the PICT and compute operations.
    pub pictures: u64,
    pub picture_size: (u32, u32),
    /// The image pipeline of PICT and compute operations.
    pub pipeline: Job,
    /// The job of a HASH operation.
    pub hash: Job,
    /// Longest scan, in records (lengths are uniform in 1..=scan_max).
    pub scan_max: u64,
}

impl Plan {
    /// Whether any operation reads or writes the records.
    pub fn uses_records(&self) -> bool {
        self.mix.parts().iter().any(|(k, _)| !k.needs_pictures())
    }

    pub fn uses_pictures(&self) -> bool {
        self.mix.parts().iter().any(|(k, _)| k.needs_pictures())
    }
}

/// The records of one cluster, shared by every client of every thread and
/// every phase: those readers may pick (loaded, or inserted and answered,
/// with no gap before them) and the next number to insert.
#[derive(Debug)]
pub struct Records {
    existing: AtomicU64,
    next: AtomicU64,
    /// Inserts answered out of order, waiting for the ones before them.
    answered: Mutex<std::collections::BTreeSet<u64>>,
}

impl Records {
    pub fn new(loaded: u64) -> Records {
        Records { existing: AtomicU64::new(loaded), next: AtomicU64::new(loaded), answered: Mutex::default() }
    }

    fn existing(&self) -> u64 {
        self.existing.load(Ordering::Acquire)
    }

    fn claim(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Insert `id` was answered (a failed one too: its number is spent, and
    /// a read of it counts as not_found). Readers see every record up to the
    /// first insert still in flight, as YCSB's acknowledged counter.
    fn answered(&self, id: u64) {
        let mut waiting = self.answered.lock().expect("records lock");
        waiting.insert(id);
        let mut upto = self.existing.load(Ordering::Acquire);
        while waiting.remove(&upto) {
            upto += 1;
        }
        self.existing.store(upto, Ordering::Release);
    }
}

/// What one timed phase measured.
#[derive(Debug)]
pub struct Phase {
    pub clients: usize,
    pub threads: usize,
    pub pace: Pace,
    /// The run's length: throughput counts what was answered within it.
    pub seconds: f64,
    /// How long the last answers took to arrive after the end.
    pub drain_seconds: f64,
    pub recorder: Recorder,
    pub energy: Energy,
    /// Batches the clients' SDK sent in the run, carrying how many requests.
    pub batches: BatchStats,
}

impl Phase {
    pub fn ops_per_second(&self) -> f64 {
        self.recorder.succeeded_in_window() as f64 / self.seconds
    }
}

/// Energy used during a phase, where it could be measured.
#[derive(Debug, Clone)]
pub enum Energy {
    Measured { joules: f64, zones: Vec<String> },
    Unreadable(String),
}

/// The clients' start line: every thread connects its clients, then all
/// start at once (or none do, if one could not connect).
#[derive(Debug)]
struct Gate {
    parties: usize,
    state: Mutex<(usize, bool, Option<Option<Instant>>)>,
    ready: Condvar,
}

impl Gate {
    fn new(parties: usize) -> Gate {
        Gate { parties, state: Mutex::new((0, false, None)), ready: Condvar::new() }
    }

    /// Waits for every party; returns the common start, or `None` when a
    /// party arrived failed.
    fn arrive(&self, failed: bool) -> Option<Instant> {
        let mut s = self.state.lock().expect("gate lock");
        s.0 += 1;
        s.1 |= failed;
        if s.0 == self.parties {
            // A moment for every thread to wake before the clock starts.
            s.2 = Some((!s.1).then(|| Instant::now() + Duration::from_millis(20)));
            self.ready.notify_all();
        }
        loop {
            if let Some(start) = s.2 {
                return start;
            }
            s = self.ready.wait(s).expect("gate lock");
        }
    }
}

/// A thread's place at the gate: arrives as failed if the thread leaves
/// (an error, a panic) without arriving, so the others are not left waiting.
struct Place<'a> {
    gate: &'a Gate,
    arrived: bool,
}

impl Place<'_> {
    fn arrive(mut self, failed: bool) -> Option<Instant> {
        self.arrived = true;
        self.gate.arrive(failed)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            self.gate.arrive(true);
        }
    }
}

/// One client: its SDK client, its random stream, its key chooser.
struct ClientOps {
    client: Rc<Client>,
    rng: SmallRng,
    keys: KeyChooser,
    plan: Arc<Plan>,
    records: Arc<Records>,
    value: Vec<u8>,
}

impl ClientOps {
    fn new(client: Rc<Client>, plan: Arc<Plan>, keys: KeyChooser, records: Arc<Records>, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut value = vec![0u8; plan.value_size];
        rng.fill_bytes(&mut value);
        ClientOps { client, rng, keys, plan, records, value }
    }

    fn existing(&self) -> u64 {
        self.records.existing()
    }

    fn pick(&mut self) -> u64 {
        let n = self.existing();
        self.keys.next(&mut self.rng, n)
    }

    /// A fresh value: new random bytes at the front, so every write differs.
    fn next_value(&mut self) -> &[u8] {
        let head = self.value.len().min(8);
        let r = self.rng.next_u64().to_le_bytes();
        self.value[..head].copy_from_slice(&r[..head]);
        &self.value
    }

    async fn get(&self, id: u64) -> Outcome {
        match self.client.get(record_key(id).as_bytes()).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("not_found".into()),
            Err(e) => Err(error_kind(&e)),
        }
    }

    async fn put(&mut self, id: u64) -> Outcome {
        let key = record_key(id);
        self.next_value();
        self.client.put(key.as_bytes(), &self.value).await.map_err(|e| error_kind(&e))
    }

    async fn compute(&self, key: String, job: &Job) -> Outcome {
        match self.client.compute(key.as_bytes(), &ComputeRequest::new(job.clone())).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("not_found".into()),
            Err(e) => Err(error_kind(&e)),
        }
    }

    async fn execute(&mut self, kind: OpKind) -> Outcome {
        match kind {
            OpKind::Read | OpKind::Get => {
                let id = self.pick();
                self.get(id).await
            }
            OpKind::Update | OpKind::Put => {
                let id = self.pick();
                self.put(id).await
            }
            OpKind::Insert => {
                let id = self.records.claim();
                let outcome = self.put(id).await;
                self.records.answered(id);
                outcome
            }
            OpKind::Scan => {
                let first = self.pick();
                let len = self.rng.random_range(1..=self.plan.scan_max.max(1));
                let end = (first + len).min(self.existing());
                let reads = (first..end.max(first + 1)).map(|id| self.get(id));
                futures::future::join_all(reads).await.into_iter().find(Result::is_err).unwrap_or(Ok(()))
            }
            OpKind::ReadModifyWrite => {
                let id = self.pick();
                self.get(id).await?;
                self.put(id).await
            }
            OpKind::Hash => {
                let id = self.pick();
                let job = self.plan.hash.clone();
                self.compute(record_key(id), &job).await
            }
            OpKind::Pict | OpKind::Compute => {
                let i = self.rng.random_range(0..self.plan.pictures.max(1));
                let job = self.plan.pipeline.clone();
                self.compute(picture_key(i), &job).await
            }
        }
    }
}

impl Operator for ClientOps {
    async fn call(&mut self) -> (OpKind, Outcome) {
        let kind = self.plan.mix.pick(&mut self.rng);
        (kind, self.execute(kind).await)
    }
}

/// Longest wait for a client's connections before a run.
const CONNECT_LIMIT: Duration = Duration::from_secs(15);

/// `f` within `limit`, its error in words.
async fn within<T>(limit: Duration, f: impl std::future::Future<Output = Result<T, ClientError>>) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from the cluster within {limit:?}")),
    }
}

/// Sends one read to each worker of the ring (of a key it owns; found or
/// not does not matter), so the client holds a connection to each.
async fn open_every_worker(client: &Client) -> Result<(), ClientError> {
    let view = client.ring();
    let mut owners: Vec<_> = view.members.iter().map(|m| m.id).collect();
    let mut i = 0u64;
    while !owners.is_empty() && i < 100_000 {
        let key = format!("bench-warm-{i}");
        if let Some(pos) = view.ring.owner(key.as_bytes()).and_then(|o| owners.iter().position(|w| *w == o)) {
            owners.swap_remove(pos);
            client.get(key.as_bytes()).await?;
        }
        i += 1;
    }
    Ok(())
}

/// A short, stable name for an error, for counting errors by kind.
pub fn error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Unreachable { .. } => "unreachable".into(),
        ClientError::Unavailable(_) => "unavailable".into(),
        ClientError::TooLarge { kind, .. } => format!("too_large:{}", snake_case(&format!("{kind:?}"))),
        ClientError::Invalid(_) => "invalid".into(),
        ClientError::Storage { kind, .. } => format!("storage:{}", snake_case(&format!("{kind:?}"))),
        ClientError::Overloaded => "overloaded".into(),
        ClientError::Compute(c) => format!("compute:{}", snake_case(&format!("{:?}", c.kind))),
        ClientError::Timeout(_) => "timeout".into(),
        ClientError::Unsettled(_) => "unsettled".into(),
        ClientError::NoWorkers => "no_workers".into(),
        ClientError::Rpc(_) => "rpc".into(),
        _ => "other".into(),
    }
}

fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar
}

/// Runs `work` on `threads` threads, each on a current-thread runtime with a
/// `LocalSet`, and collects what each returns.
fn on_threads<T: Send + 'static>(
    threads: usize,
    work: impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<T>> {
    let work = Arc::new(work);
    (0..threads)
        .map(|t| {
            let work = work.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                tokio::task::LocalSet::new().block_on(&rt, work(t))
            })
        })
        .collect()
}

/// What the load phase stored.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub records: u64,
    pub pictures: u64,
    pub seconds: f64,
}

/// Stores the plan's records (random values) and pictures, with `threads`
/// threads of concurrent writers, straight to the owners whatever the
/// target's route (the master's cache starts cold either way).
pub fn load(target: &Target, plan: &Plan, threads: usize) -> Result<Loaded, Failure> {
    let target = &Target { via_master: false, ..target.clone() };
    let started = Instant::now();
    let records = if plan.uses_records() { plan.records } else { 0 };
    let pictures = if plan.uses_pictures() { plan.pictures } else { 0 };
    let bar = progress_bar(records + pictures, "loading   [{bar:40}] {pos}/{len} {per_sec}");
    // Pictures are made here (PNG encoding is the slow part) and stored by
    // the writers with the records.
    let pngs: Vec<Vec<u8>> = (0..pictures)
        .map(|i| super::picture::png(i, plan.picture_size.0, plan.picture_size.1))
        .collect::<Result<_, _>>()
        .map_err(Failure::trouble)?;
    let pngs = Arc::new(pngs);
    let next = Arc::new(AtomicU64::new(0));
    let total = records + pictures;
    let (target, value_size, bar2) = (target.clone(), plan.value_size, bar.clone());
    let handles = on_threads(threads.max(1), move |t| {
        let (target, pngs, next, bar) = (target.clone(), pngs.clone(), next.clone(), bar2.clone());
        Box::pin(async move {
            let client = Rc::new(
                tokio::time::timeout(CONNECT_LIMIT, target.connect())
                    .await
                    .map_err(|_| Failure::from(ClientError::Timeout(CONNECT_LIMIT)))??,
            );
            // Concurrent writers per thread, sharing its connections.
            let writers = (0..16).map(|w| {
                let (client, pngs, next, bar) = (client.clone(), pngs.clone(), next.clone(), bar.clone());
                tokio::task::spawn_local(async move {
                    let mut rng = SmallRng::seed_from_u64(((t as u64) << 32) | w);
                    let mut value = vec![0u8; value_size];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return Ok::<(), Failure>(());
                        }
                        let (key, bytes) = if i < records {
                            rng.fill_bytes(&mut value);
                            (record_key(i), &value[..])
                        } else {
                            (picture_key(i - records), &pngs[(i - records) as usize][..])
                        };
                        client.put(key.as_bytes(), bytes).await.map_err(|e| {
                            let mut f = Failure::from(e);
                            f.message = format!("loading {key}: {}", f.message);
                            f
                        })?;
                        bar.inc(1);
                    }
                })
            });
            for w in futures::future::join_all(writers).await {
                w.map_err(|e| Failure::trouble(e.to_string()))??;
            }
            Ok::<(), Failure>(())
        })
    });
    for h in handles {
        h.join().map_err(|_| Failure::trouble("a loading thread panicked"))??;
    }
    bar.finish_and_clear();
    Ok(Loaded { records, pictures, seconds: started.elapsed().as_secs_f64() })
}

/// One timed phase: `clients` clients on `threads` threads for `duration`.
pub fn run_phase(
    target: &Target,
    plan: &Arc<Plan>,
    records: &Arc<Records>,
    clients: usize,
    threads: usize,
    pace: Pace,
    duration: Duration,
) -> Result<Phase, String> {
    let clients = clients.max(1);
    let threads = threads.clamp(1, clients);
    let live = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Gate::new(threads + 1));
    // Built once: a Zipfian over many records takes a while to set up.
    let keys = KeyChooser::new(plan.distribution, records.existing());
    let handles = {
        let (target, plan, live, gate, records) =
            (target.clone(), plan.clone(), live.clone(), gate.clone(), records.clone());
        on_threads(threads, move |t| {
            let (target, plan, live, gate, records, keys) =
                (target.clone(), plan.clone(), live.clone(), gate.clone(), records.clone(), keys.clone());
            Box::pin(async move {
                let place = Place { gate: &gate, arrived: false };
                let mut mine = Vec::new();
                let mut failure = None;
                // The distinct SDK clients, for their batch counts.
                let mut sdk: Vec<Rc<Client>> = Vec::new();
                for c in (t..clients).step_by(threads) {
                    let client = match (sdk.first(), target.setup.connections) {
                        (Some(client), Connections::Shared) => Ok(Rc::clone(client)),
                        _ => target.connect_everywhere().await.inspect(|client| sdk.push(client.clone())),
                    };
                    match client {
                        Ok(client) => {
                            let seed = 0x5eed_0000 + c as u64;
                            mine.push((c, ClientOps::new(client, plan.clone(), keys.clone(), records.clone(), seed)));
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                let batches = || sdk.iter().map(|c| c.batch_stats()).fold(BatchStats::default(), |a, b| a + b);
                let Some(start) = place.arrive(failure.is_some()) else {
                    return Err(failure.unwrap_or_else(|| "another client could not connect".into()));
                };
                let start = tokio::time::Instant::from_std(start);
                let stop = start + duration;
                let batches_before = batches();
                let tasks: Vec<_> = mine
                    .into_iter()
                    .map(|(c, mut ops)| {
                        let live = live.clone();
                        tokio::task::spawn_local(async move {
                            let mut pacer = Pacer::new(pace, start, stop, c, clients);
                            let mut rec = Recorder::counting_into(live);
                            drive(&mut pacer, &mut ops, &mut rec).await;
                            (rec, Instant::now())
                        })
                    })
                    .collect();
                let mut merged = Recorder::default();
                let mut last = start.into_std();
                for task in tasks {
                    let (rec, end) = task.await.map_err(|e| e.to_string())?;
                    merged.merge(rec);
                    last = last.max(end);
                }
                Ok::<_, String>((merged, last, batches() - batches_before))
            })
        })
    };
    let rapl = Rapl::open();
    let Some(start) = gate.arrive(false) else {
        // A thread failed to connect: collect its reason.
        let mut reason = String::from("clients could not connect");
        for h in handles {
            if let Ok(Err(e)) = h.join() {
                reason = e;
            }
        }
        return Err(reason);
    };
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let before = rapl.as_ref().map_err(Clone::clone).and_then(|r| r.read().map(|b| (r, b)));
    let bar = progress_bar(duration.as_millis() as u64, "{prefix} [{bar:40}] {elapsed_precise} {msg}");
    bar.set_prefix(format!("{clients:>3} clients"));
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let elapsed = start.elapsed();
        bar.set_position((elapsed.as_millis() as u64).min(duration.as_millis() as u64));
        let done = live.load(Ordering::Relaxed);
        bar.set_message(format!("{done} ops, {:.0} ops/s", done as f64 / elapsed.as_secs_f64().max(1e-3)));
    }
    let energy = match before {
        Ok((rapl, b)) => match rapl.read() {
            Ok(a) => Energy::Measured { joules: rapl.joules(&b, &a), zones: rapl.zone_names() },
            Err(e) => Energy::Unreadable(e),
        },
        Err(e) => Energy::Unreadable(e),
    };
    bar.finish_and_clear();
    let mut recorder = Recorder::default();
    let stop = start + duration;
    let mut last = stop;
    let mut batches = BatchStats::default();
    for h in handles {
        let (rec, end, sent) = h.join().map_err(|_| "a client thread panicked".to_string())??;
        recorder.merge(rec);
        last = last.max(end);
        batches = batches + sent;
    }
    let drain_seconds = last.duration_since(stop).as_secs_f64();
    Ok(Phase { clients, threads, pace, seconds: duration.as_secs_f64(), drain_seconds, recorder, energy, batches })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_stable_names() {
        assert_eq!(error_kind(&ClientError::Timeout(Duration::from_secs(1))), "timeout");
        let busy = wimpy_client::ComputeFailure {
            kind: wimpy_client::ComputeFailureKind::BackendBusy,
            message: String::new(),
            limit: 0,
            actual: 0,
        };
        assert_eq!(error_kind(&ClientError::Compute(busy)), "compute:backend_busy");
    }

    #[test]
    fn readers_see_inserts_once_every_earlier_one_is_answered() {
        let r = Records::new(10);
        let (a, b, c) = (r.claim(), r.claim(), r.claim());
        assert_eq!((a, b, c), (10, 11, 12));
        r.answered(c);
        r.answered(b);
        assert_eq!(r.existing(), 10, "10 is still in flight");
        r.answered(a);
        assert_eq!(r.existing(), 13);
    }

    #[test]
    fn a_thread_that_leaves_without_arriving_fails_the_gate() {
        let gate = Arc::new(Gate::new(2));
        let g = gate.clone();
        let h = std::thread::spawn(move || {
            let _place = Place { gate: &g, arrived: false };
            panic!("a client thread dies before the start");
        });
        assert_eq!(gate.arrive(false), None);
        assert!(h.join().is_err());
    }

    #[test]
    fn the_gate_starts_everyone_together_or_no_one() {
        let gate = Arc::new(Gate::new(3));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let g = gate.clone();
                std::thread::spawn(move || g.arrive(false))
            })
            .collect();
        let mine = gate.arrive(false).unwrap();
        for h in hs {
            assert_eq!(h.join().unwrap(), Some(mine));
        }
        let gate = Arc::new(Gate::new(2));
        let g = gate.clone();
        let h = std::thread::spawn(move || g.arrive(true));
        assert_eq!(gate.arrive(false), None);
        assert_eq!(h.join().unwrap(), None);
    }
}
