//! The engine: probes the backends at start-up, owns the threads that run
//! them, and runs jobs (decode → backend passes → encode / hash), timing
//! each stage.
//!
//! Each backend has a lane: a bounded queue and the threads that drain it.
//! A GPU context belongs to the thread that created it, so a GPU lane has
//! exactly one thread, which creates the backend and keeps it. CPU lanes
//! have `cpu_threads` threads each (one per core by default; a worker that
//! enables both CPU backends can have twice as many busy threads as cores).
//! A full queue answers `Overloaded` at once rather than letting work pile
//! up behind a busy device.
//!
//! Dropping the engine closes every queue and joins every lane thread, so
//! each backend (a GPU context above all) is torn down on its own thread,
//! after its last job, before the engine's owner goes on (and, in a worker,
//! before the process exits under it).

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wimpy_schema::job::{Job, Op};

use super::backend::cpu::CpuBackend;
use super::backend::simd::SimdBackend;
use super::{Backend, BackendInfo, BackendKind, ComputeError, Deadline, Image, Limits, StageTimes};

/// How long past a job's deadline its caller still waits for the backend
/// to reach its next deadline check.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Which backends to probe.
    pub backends: Vec<BackendKind>,
    /// Limits for every job.
    pub limits: Limits,
    /// Jobs each lane may hold waiting, beyond the ones running.
    pub queue_depth: usize,
    /// Threads for each CPU lane.
    pub cpu_threads: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            backends: BackendKind::PREFERENCE.to_vec(),
            limits: Limits::default(),
            queue_depth: 16,
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What a job gave.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutput {
    /// Encoded image bytes or a 32-byte digest.
    pub bytes: Vec<u8>,
    /// The backend that ran it.
    pub backend: BackendInfo,
    /// Time per stage.
    pub times: StageTimes,
    /// Size of the last image in the job (`None` if there was none).
    pub size: Option<(u32, u32)>,
}

/// A backend that could not be set up, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    /// The backend.
    pub kind: BackendKind,
    /// What went wrong.
    pub reason: String,
}

struct Task {
    job: Job,
    value: Vec<u8>,
    deadline: Deadline,
    reply: tokio::sync::oneshot::Sender<Result<JobOutput, ComputeError>>,
}

struct Lane {
    info: BackendInfo,
    /// Closed (dropped) to stop the lane's threads.
    queue: SyncSender<Task>,
    depth: usize,
    /// The lane's threads, each holding a backend; joined on drop.
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The probed backends and their lanes.
pub struct Engine {
    lanes: Vec<Lane>,
    failures: Vec<ProbeFailure>,
    limits: Limits,
    /// Jobs taken and not yet answered, on every lane: the load a client
    /// choosing among the workers holding a key weighs.
    jobs: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("backends", &self.backends()).field("failures", &self.failures).finish()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Every queue closes before any thread is waited for, so the lanes
        // finish their current jobs side by side.
        let threads: Vec<_> = self.lanes.drain(..).flat_map(|Lane { threads, .. }| threads).collect();
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a compute lane's thread panicked as it stopped");
            }
        }
    }
}

/// Creates a backend of `kind` on the calling thread.
fn create(kind: BackendKind) -> Result<Box<dyn Backend>, String> {
    Ok(match kind {
        BackendKind::Cpu => Box::new(CpuBackend::default()),
        BackendKind::Simd => Box::new(SimdBackend::new()),
        #[cfg(feature = "gles")]
        BackendKind::Gles => Box::new(super::backend::gles::GlesBackend::new().map_err(|e| e.to_string())?),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Box::new(super::backend::wgpu::WgpuBackend::new().map_err(|e| e.to_string())?),
        #[cfg(not(feature = "gles"))]
        BackendKind::Gles => return Err("this build has no gles backend (built without the `gles` feature)".into()),
        #[cfg(not(feature = "wgpu"))]
        BackendKind::Wgpu => return Err("this build has no wgpu backend (built without the `wgpu` feature)".into()),
    })
}

impl Engine {
    /// Probes the configured backends (GPU ones each on a new thread that
    /// keeps the context) and starts their lanes. A backend that fails to
    /// come up is left out and reported by [`Engine::failures`].
    pub fn start(config: &EngineConfig) -> Engine {
        let mut lanes = Vec::new();
        let mut failures = Vec::new();
        for kind in BackendKind::PREFERENCE {
            if !config.backends.contains(&kind) {
                continue;
            }
            let gpu = matches!(kind, BackendKind::Gles | BackendKind::Wgpu);
            let threads = if gpu { 1 } else { config.cpu_threads.max(1) };
            match Lane::start(kind, threads, config.queue_depth, config.limits) {
                Ok(lane) => lanes.push(lane),
                Err(reason) => failures.push(ProbeFailure { kind, reason }),
            }
        }
        Engine { lanes, failures, limits: config.limits, jobs: Default::default() }
    }

    /// The backends that came up, in order of preference.
    pub fn backends(&self) -> Vec<BackendInfo> {
        self.lanes.iter().map(|l| l.info.clone()).collect()
    }

    /// The backends that did not come up, and why.
    pub fn failures(&self) -> &[ProbeFailure] {
        &self.failures
    }

    /// The lane `choice` names, or for `None` the most preferred backend
    /// that is not a GPU API in software (llvmpipe is correct but no faster
    /// than the CPU code it runs on).
    fn lane(&self, choice: Option<BackendKind>) -> Result<&Lane, ComputeError> {
        match choice {
            Some(kind) => self.lanes.iter().find(|l| l.info.kind == kind).ok_or(ComputeError::BackendUnavailable(kind)),
            None => self
                .lanes
                .iter()
                .find(|l| !l.info.software)
                .or(self.lanes.first())
                .ok_or(ComputeError::BackendUnavailable(BackendKind::Cpu)),
        }
    }

    /// Jobs queued or running now, on every backend.
    pub fn jobs(&self) -> usize {
        self.jobs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many jobs the backend `choice` runs at once (1 if it is unavailable).
    pub fn parallelism(&self, choice: Option<BackendKind>) -> usize {
        self.lane(choice).map_or(1, |l| l.threads.len())
    }

    /// Runs `job` over `value` on `choice` (auto for `None`), within
    /// `deadline` (the engine's default for `None`).
    pub async fn run(
        &self,
        job: Job,
        value: Vec<u8>,
        choice: Option<BackendKind>,
        deadline: Option<Duration>,
    ) -> Result<JobOutput, ComputeError> {
        if value.len() as u64 > self.limits.max_value_bytes {
            return Err(ComputeError::ValueTooLarge { actual: value.len() as u64, limit: self.limits.max_value_bytes });
        }
        let lane = self.lane(choice)?;
        self.jobs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _counted = Uncount(&self.jobs);
        let (reply, answer) = tokio::sync::oneshot::channel();
        // A job may ask for less time than the worker allows, never more.
        let deadline = Deadline::after(deadline.map_or(self.limits.deadline, |d| d.min(self.limits.deadline)));
        lane.queue.try_send(Task { job, value, deadline, reply }).map_err(|e| match e {
            TrySendError::Full(_) => {
                ComputeError::Overloaded { backend: lane.info.kind, queued: lane.depth, limit: lane.depth }
            }
            TrySendError::Disconnected(_) => {
                ComputeError::Device { backend: lane.info.kind, reason: "the backend's thread has stopped".into() }
            }
        })?;
        // Backends check the deadline between passes; one very long pass (or
        // a stuck device) must not hold the caller past it, so the caller
        // stops waiting a grace period later. The lane finishes the pass.
        let limit = deadline.limit();
        match tokio::time::timeout(limit + DEADLINE_GRACE, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ComputeError::Device {
                backend: lane.info.kind,
                reason: "the backend's thread stopped mid-job".into(),
            }),
            Err(_) => Err(ComputeError::DeadlineExceeded {
                elapsed_ms: (limit + DEADLINE_GRACE).as_millis() as u64,
                limit_ms: limit.as_millis() as u64,
            }),
        }
    }
}

/// Takes a job off [`Engine::jobs`] when its caller is answered (or gives up).
struct Uncount<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Lane {
    /// Starts `threads` threads for `kind`, waiting until the first has
    /// created its backend (or failed to).
    fn start(kind: BackendKind, threads: usize, depth: usize, limits: Limits) -> Result<Lane, String> {
        let (queue, tasks) = mpsc::sync_channel::<Task>(depth);
        let tasks = Arc::new(Mutex::new(tasks));
        let mut info = None;
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let (ready, probed) = mpsc::channel();
            let tasks = Arc::clone(&tasks);
            let handle = std::thread::Builder::new()
                .name(format!("compute-{kind}-{i}"))
                .spawn(move || {
                    let mut backend = match create(kind) {
                        // Lane::start waits for this answer, so the sends
                        // cannot fail.
                        Ok(b) => {
                            let _ = ready.send(Ok(b.info().clone()));
                            b
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    loop {
                        // Hold the lock only to take one task.
                        let task = match tasks.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(task) = task else { return };
                        if task.reply.is_closed() {
                            // The caller gave up (timed out, disconnected): skip the work.
                            continue;
                        }
                        // A panic in a backend is a bug; it fails this job, not the lane.
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            execute(backend.as_mut(), &task.job, task.value, &limits, &task.deadline)
                        }))
                        .unwrap_or_else(|panic| {
                            let reason = panic
                                .downcast_ref::<String>()
                                .map(String::as_str)
                                .or_else(|| panic.downcast_ref::<&str>().copied())
                                .unwrap_or("a panic");
                            Err(ComputeError::Device { backend: kind, reason: format!("the backend failed: {reason}") })
                        });
                        // A caller that stopped waiting has had its answer
                        // (a deadline or a disconnection) already.
                        let _ = task.reply.send(result);
                    }
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
            handles.push(handle);
            // On failure the threads started so far find the queue closed
            // as this returns, and end; none of them holds a GPU context
            // (GPU lanes have one thread, the one that failed).
            let probed = probed.recv().map_err(|_| "the backend's thread died while starting".to_string())??;
            info.get_or_insert(probed);
        }
        let info = info.ok_or_else(|| "no threads".to_string())?;
        Ok(Lane { info, queue, depth, threads: handles })
    }
}

/// What flows between a job's operations.
enum Stage {
    Bytes(Vec<u8>),
    Image(Image),
}

/// Runs `job` on `backend`: decode and encode on this thread's CPU, each run
/// of image operations in one call so a GPU keeps the image between them.
pub fn execute(
    backend: &mut dyn Backend,
    job: &Job,
    value: Vec<u8>,
    limits: &Limits,
    deadline: &Deadline,
) -> Result<JobOutput, ComputeError> {
    let mut times = StageTimes::default();
    let mut stage = Stage::Bytes(value);
    let mut size = None;
    let ops = job.ops();
    let mut i = 0;
    while i < ops.len() {
        deadline.check()?;
        stage = match (&ops[i], stage) {
            (Op::Decode, Stage::Bytes(bytes)) => {
                let start = Instant::now();
                let image = Image::decode(&bytes, limits)?;
                times.decode += start.elapsed();
                size = Some((image.width(), image.height()));
                Stage::Image(image)
            }
            (Op::Image(_), Stage::Image(image)) => {
                let run: Vec<_> = ops[i..]
                    .iter()
                    .map_while(|op| match op {
                        Op::Image(op) => Some(op.clone()),
                        _ => None,
                    })
                    .collect();
                i += run.len() - 1;
                let image = backend.run_image(image, &run, limits, deadline, &mut times)?;
                size = Some((image.width(), image.height()));
                Stage::Image(image)
            }
            (Op::Encode(encoding), Stage::Image(image)) => {
                let start = Instant::now();
                let bytes = image.encode(*encoding)?;
                times.encode += start.elapsed();
                Stage::Bytes(bytes)
            }
            (Op::Hash(h), Stage::Bytes(bytes)) => {
                let digest = backend.hash(&bytes, *h, deadline, &mut times)?;
                Stage::Bytes(digest.to_vec())
            }
            (op, _) => {
                // Job::new checked the chain, so this is a bug, reported rather than panicking.
                return Err(ComputeError::Device {
                    backend: backend.info().kind,
                    reason: format!("operation {i} ({op}) got the wrong input"),
                });
            }
        };
        i += 1;
    }
    let bytes = match stage {
        Stage::Bytes(b) => b,
        Stage::Image(image) => {
            let start = Instant::now();
            let b = image.encode(wimpy_schema::job::Encoding::Png)?;
            times.encode += start.elapsed();
            b
        }
    };
    Ok(JobOutput { bytes, backend: backend.info().clone(), times, size })
}
