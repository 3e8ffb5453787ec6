//! Compute jobs from the SDK: sent to a worker that holds the key (the data
//! does not move; the result does), or fanned out over many keys to every
//! such worker at once.
//!
//! Any member of a key's chain runs a job over its clean copy (a dirty one
//! waits for the write on its way, as a get does). The SDK picks the member
//! with the fewest jobs: those it has sent there and not had answered, and
//! those the worker's engine held when it last answered one (a report that
//! counts for half a second). A member that
//! is busy (its backend's queue is full, or its intake is) or lacks the
//! backend the job asks for hands the job to the next before the SDK backs
//! off; the result says which worker ran it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use wimpy_schema::ComputeFailureKind;
use wimpy_schema::job::{BackendKind, Job, StageTimes, wire};
use wimpy_schema::wimpy_capnp::worker;
use wimpy_schema::wimpy_capnp::{byte_sink, compute_output, compute_result};
use wimpy_schema::{LimitKind, WorkerId};

use crate::client::{Attempt, failure_to};
use crate::streams::Collector;
use crate::{Client, ClientError};

/// A job and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeRequest {
    /// The operations.
    pub job: Job,
    /// The backend to run on (`None`: the worker's fastest).
    pub backend: Option<BackendKind>,
    /// How long the job may run on the worker (`None`: the worker's default).
    pub deadline: Option<Duration>,
}

impl ComputeRequest {
    /// `job` on the worker's fastest backend, under the worker's deadline.
    pub fn new(job: Job) -> ComputeRequest {
        ComputeRequest { job, backend: None, deadline: None }
    }
}

/// A job's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeOutput {
    /// Encoded image bytes, or a 32-byte digest for a hash job.
    pub bytes: Vec<u8>,
    /// The backend that ran the job.
    pub backend: BackendKind,
    /// What it ran on (instruction set, or GPU and driver).
    pub device: String,
    /// A GPU API in software (llvmpipe, lavapipe).
    pub software: bool,
    /// Time per stage on the worker.
    pub times: StageTimes,
    /// Size of the last image of the job (`None` without one).
    pub size: Option<(u32, u32)>,
    /// The worker that ran it (0: a worker before schema version 6).
    pub worker: WorkerId,
    /// Jobs its engine held as this one ended, this one included.
    pub worker_jobs: u32,
}

/// What the SDK knows of one worker's compute load.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ComputeLoad {
    /// Jobs this client sent there and has not had answered.
    in_flight: u32,
    /// Other jobs its engine held when it last answered one, and when.
    reported: u32,
    reported_at: Option<std::time::Instant>,
}

/// How long a worker's report of its load counts: a worker passed over
/// for a high count is not heard from again until it is chosen, so the
/// count must lapse by itself.
const REPORT_COUNTS_FOR: Duration = Duration::from_millis(500);

impl ComputeLoad {
    fn weight(&self) -> u32 {
        let fresh = self.reported_at.is_some_and(|at| at.elapsed() < REPORT_COUNTS_FOR);
        self.in_flight + if fresh { self.reported } else { 0 }
    }
}

/// Counts a job as on its way to a worker until dropped.
struct OnItsWay<'a> {
    client: &'a Client,
    worker: WorkerId,
}

impl Drop for OnItsWay<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.client.compute_load.borrow_mut().get_mut(&self.worker) {
            l.in_flight = l.in_flight.saturating_sub(1);
        }
    }
}

/// One backend a worker has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerBackend {
    pub backend: BackendKind,
    pub device: String,
    pub software: bool,
}

fn read_output(o: compute_output::Reader<'_>, bytes: Vec<u8>) -> Result<ComputeOutput, ClientError> {
    let (w, h) = (o.get_width(), o.get_height());
    Ok(ComputeOutput {
        bytes,
        backend: wire::backend_from_wire(o.get_backend()?)
            .ok_or_else(|| ClientError::Invalid("the worker reported backend auto".into()))?,
        device: o.get_device()?.to_string().map_err(|e| ClientError::Invalid(e.to_string()))?,
        software: o.get_software(),
        times: wire::read_times(o.get_times()?),
        size: (w > 0 && h > 0).then_some((w, h)),
        worker: o.get_worker(),
        worker_jobs: o.get_jobs(),
    })
}

/// Reads a result whose value came inline (or, with `streamed`, to a sink).
fn read_result(
    r: compute_result::Reader<'_>,
    streamed: Option<&RefCell<Vec<u8>>>,
) -> Result<Attempt<Option<ComputeOutput>>, ClientError> {
    match r.which()? {
        compute_result::Ok(o) => {
            let o = o?;
            let bytes = match o.which()? {
                compute_output::Value(v) => v?.to_vec(),
                compute_output::Streamed(n) => {
                    let got = streamed.map(|s| std::mem::take(&mut *s.borrow_mut())).unwrap_or_default();
                    if got.len() as u64 != n {
                        return Err(ClientError::Invalid(format!("result announced {n} bytes, {} arrived", got.len())));
                    }
                    got
                }
            };
            Ok(Attempt::Done(Some(read_output(o, bytes)?)))
        }
        compute_result::NotFound(()) => Ok(Attempt::Done(None)),
        compute_result::Failure(f) => failure_to(f?),
    }
}

impl Client {
    /// How long to wait for a job: the client's limit, or longer when the
    /// job may run longer on the worker (whose default deadline is 60 s).
    fn compute_limit(&self, req: &ComputeRequest) -> Duration {
        self.opts.timeout.max(req.deadline.unwrap_or(Duration::from_secs(60)) + Duration::from_secs(5))
    }

    /// The members of `key`'s chain that serve, but those in
    /// `passed_over`, fewest jobs first (ties in turn), with the epoch of
    /// the ring they come from.
    fn compute_candidates(&self, key: &[u8], passed_over: &[WorkerId]) -> Result<(u64, Vec<WorkerId>), ClientError> {
        let view = self.ring();
        if view.ring.is_empty() {
            return Err(ClientError::NoWorkers);
        }
        let serves = |id: &WorkerId| view.members.iter().any(|m| m.id == *id && m.state.serves());
        let mut found: Vec<WorkerId> = view
            .ring
            .chain_of(key)
            .members()
            .iter()
            .copied()
            .filter(|id| serves(id) && !passed_over.contains(id))
            .collect();
        if !found.is_empty() {
            let turn = self.reads.get();
            self.reads.set(turn.wrapping_add(1));
            let n = found.len();
            found.rotate_left((turn % n as u64) as usize);
        }
        let load = self.compute_load.borrow();
        found.sort_by_key(|id| load.get(id).map_or(0, ComputeLoad::weight));
        Ok((view.ring.epoch(), found))
    }

    /// Counts a job as on its way to `worker`.
    fn on_its_way(&self, worker: WorkerId) -> OnItsWay<'_> {
        self.compute_load.borrow_mut().entry(worker).or_default().in_flight += 1;
        OnItsWay { client: self, worker }
    }

    /// Notes what a worker said of its load with a result.
    fn heard_load(&self, out: &ComputeOutput) {
        if out.worker != 0 {
            let mut load = self.compute_load.borrow_mut();
            let l = load.entry(out.worker).or_default();
            l.reported = out.worker_jobs.saturating_sub(1);
            l.reported_at = Some(std::time::Instant::now());
        }
    }

    /// Runs `attempt` on the least loaded member of `key`'s chain, within
    /// `limit`. A member that is busy, lacks the job's backend, cannot
    /// answer now (`unavailable`), or whose connection fails, hands the job
    /// to the next; once every member has
    /// been tried, the SDK backs off and tries them all again (or, if none
    /// has the backend, says so).
    async fn on_a_member_within<T, F, Fut>(&self, limit: Duration, key: &[u8], attempt: F) -> Result<T, ClientError>
    where
        F: Fn(worker::Client, u64, WorkerId) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, ClientError>>,
    {
        let run = async {
            let mut pause = self.opts.backoff;
            let mut passed_over: Vec<WorkerId> = Vec::new();
            // Why the last member was passed over.
            let mut last: Option<ClientError> = None;
            for _ in 0..self.opts.attempts {
                let (epoch, candidates) = self.compute_candidates(key, &passed_over)?;
                let Some(&id) = candidates.first() else {
                    if matches!(&last, Some(ClientError::Compute(c)) if c.kind == ComputeFailureKind::BackendUnavailable)
                    {
                        return Err(last.take().unwrap_or(ClientError::NoWorkers));
                    }
                    // All busy (or gone): back off, with a random share of
                    // the pause, then try them all again.
                    passed_over.clear();
                    tokio::time::sleep(pause.mul_f64(0.5 + crate::client::rand_unit())).await;
                    pause *= 2;
                    self.refresh_ring().await?;
                    continue;
                };
                let outcome = {
                    let _counted = self.on_its_way(id);
                    match self.worker(id).await {
                        Ok(w) => attempt(w, epoch, id).await,
                        Err(e) => Err(e),
                    }
                };
                match outcome {
                    Ok(Attempt::Done(v)) => return Ok(v),
                    Ok(Attempt::Busy) => last = Some(ClientError::Overloaded),
                    Err(ClientError::Compute(c))
                        if matches!(
                            c.kind,
                            ComputeFailureKind::BackendBusy | ComputeFailureKind::BackendUnavailable
                        ) =>
                    {
                        last = Some(ClientError::Compute(c));
                    }
                    Ok(Attempt::Retry) => {
                        // Its ring and ours differ: settle, then choose again.
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                        self.refresh_ring().await?;
                        continue;
                    }
                    Err(ClientError::Rpc(e)) if e.kind == capnp::ErrorKind::Overloaded => {
                        last = Some(ClientError::Overloaded);
                    }
                    Err(ClientError::Rpc(e)) if e.kind != capnp::ErrorKind::Unimplemented => {
                        self.workers.borrow_mut().remove(&id);
                        last = Some(ClientError::Rpc(e));
                    }
                    Err(e @ ClientError::Unreachable { .. }) => {
                        self.workers.borrow_mut().remove(&id);
                        last = Some(e);
                    }
                    // This copy cannot answer now (its lease ran out, its
                    // store failed, a write of the key is stuck on its way):
                    // another may.
                    Err(e) if e.is_unavailable() => last = Some(e),
                    Err(e) => return Err(e),
                }
                passed_over.push(id);
            }
            Err(last.unwrap_or(ClientError::Unsettled(self.opts.attempts)))
        };
        tokio::time::timeout(limit, run).await.map_err(|_| ClientError::Timeout(limit))?
    }

    /// Runs `req` over the value at `key` on a worker that holds it (the
    /// least loaded member of its chain; [`ComputeOutput::worker`] says
    /// which). `Ok(None)` when there is no value at `key`.
    pub async fn compute(&self, key: &[u8], req: &ComputeRequest) -> Result<Option<ComputeOutput>, ClientError> {
        let out = self
            .on_a_member_within(self.compute_limit(req), key, |w, epoch, _| async move {
                let received = Rc::new(RefCell::new(Vec::new()));
                let sink: byte_sink::Client = capnp_rpc::new_client(Collector(received.clone()));
                let mut call = w.compute_request();
                let mut p = call.get();
                p.set_key(key);
                p.set_epoch(epoch);
                p.set_sink(sink);
                wire::write_job(&req.job, req.backend, deadline_millis(req.deadline), p.init_job());
                let resp = call.send().promise.await?;
                read_result(resp.get()?.get_result()?, Some(&received))
            })
            .await?;
        if let Some(out) = &out {
            self.heard_load(out);
        }
        Ok(out)
    }

    /// Runs `req` over the value at `key` and stores the result under
    /// `store_as` (on whichever worker owns that key).
    pub async fn compute_into(
        &self,
        key: &[u8],
        req: &ComputeRequest,
        store_as: &[u8],
    ) -> Result<Option<ComputeOutput>, ClientError> {
        let Some(out) = self.compute(key, req).await? else { return Ok(None) };
        self.put(store_as, &out.bytes).await?;
        Ok(Some(out))
    }

    /// Runs `req` over every key in `keys`: each key goes to the member of
    /// its chain with the fewest jobs (counting the keys given out before
    /// it), one batch per worker, all workers at once. One result per key,
    /// in order; keys whose worker moved meanwhile, was busy or lacked the
    /// backend, or whose result is too large for a batch, are redone one at
    /// a time.
    pub async fn compute_batch(
        &self,
        keys: &[Vec<u8>],
        req: &ComputeRequest,
    ) -> Vec<Result<Option<ComputeOutput>, ClientError>> {
        // Keys per request: keeps each request and reply well inside the
        // 8 MiB message limit.
        const KEYS_PER_BATCH: usize = 256;
        let mut by_owner: BTreeMap<u64, (u64, Vec<usize>)> = BTreeMap::new();
        let mut results: Vec<Option<Result<Option<ComputeOutput>, ClientError>>> =
            (0..keys.len()).map(|_| None).collect();
        // Each key to the member of its chain with the fewest jobs, counting
        // the keys given out so far.
        let mut given: BTreeMap<WorkerId, u32> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            match self.compute_candidates(key, &[]) {
                Ok((epoch, candidates)) if !candidates.is_empty() => {
                    let load = self.compute_load.borrow();
                    let weight = |id: &WorkerId| {
                        load.get(id).map_or(0, ComputeLoad::weight) + given.get(id).copied().unwrap_or(0)
                    };
                    let owner = *candidates.iter().min_by_key(|id| weight(id)).unwrap_or(&candidates[0]);
                    drop(load);
                    *given.entry(owner).or_default() += 1;
                    by_owner.entry(owner).or_insert((epoch, Vec::new())).1.push(i);
                }
                Ok(_) => results[i] = Some(Err(ClientError::NoWorkers)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let batches: Vec<(u64, u64, Vec<usize>)> = by_owner
            .into_iter()
            .flat_map(|(owner, (epoch, indices))| {
                indices.chunks(KEYS_PER_BATCH).map(|c| (owner, epoch, c.to_vec())).collect::<Vec<_>>()
            })
            .collect();
        let batches = batches.into_iter().map(|(owner, epoch, indices)| async move {
            // A worker runs a batch a few jobs at a time: allow for the whole of it.
            let limit = self.compute_limit(req) * indices.len().div_ceil(2).max(1) as u32;
            let answer = async {
                let _counted: Vec<OnItsWay<'_>> = indices.iter().map(|_| self.on_its_way(owner)).collect();
                let w = self.worker(owner).await?;
                let mut call = w.compute_batch_request();
                let mut p = call.get();
                p.set_epoch(epoch);
                let mut list = p.reborrow().init_keys(indices.len() as u32);
                for (j, &i) in indices.iter().enumerate() {
                    list.set(j as u32, &keys[i]);
                }
                wire::write_job(&req.job, req.backend, deadline_millis(req.deadline), p.init_job());
                let resp = tokio::time::timeout(limit, call.send().promise)
                    .await
                    .map_err(|_| ClientError::Timeout(limit))??;
                let list = resp.get()?.get_results()?;
                let mut out = Vec::with_capacity(indices.len());
                for r in list.iter() {
                    out.push(read_result(r, None));
                }
                Ok::<_, ClientError>(out)
            }
            .await;
            (indices, answer)
        });
        let mut redo = Vec::new();
        for (indices, answer) in futures::future::join_all(batches).await {
            match answer {
                Ok(per_key) if per_key.len() == indices.len() => {
                    for (i, r) in indices.into_iter().zip(per_key) {
                        match r {
                            Ok(Attempt::Done(v)) => {
                                if let Some(out) = &v {
                                    self.heard_load(out);
                                }
                                results[i] = Some(Ok(v))
                            }
                            Ok(Attempt::Retry | Attempt::Busy) => redo.push(i),
                            Err(ClientError::TooLarge { kind: LimitKind::Result, .. }) => redo.push(i),
                            // Another member of its chain may take it.
                            Err(ClientError::Compute(c))
                                if matches!(
                                    c.kind,
                                    ComputeFailureKind::BackendBusy | ComputeFailureKind::BackendUnavailable
                                ) =>
                            {
                                redo.push(i)
                            }
                            Err(e) => results[i] = Some(Err(e)),
                        }
                    }
                }
                // The owner failed as a whole (down, moved, dropped): each
                // key goes its own way, with the usual retries.
                _ => redo.extend(indices),
            }
        }
        for i in redo {
            results[i] = Some(self.compute(&keys[i], req).await);
        }
        results.into_iter().map(|r| r.unwrap_or(Err(ClientError::Unsettled(0)))).collect()
    }

    /// The compute backends of every serving worker, by worker id.
    pub async fn backends(&self) -> Result<Vec<(u64, Result<Vec<WorkerBackend>, ClientError>)>, ClientError> {
        let view = self.refresh_ring().await?;
        let mut out = Vec::new();
        for m in &view.members {
            let answer = async {
                let w = self.worker(m.id).await?;
                let resp = tokio::time::timeout(self.opts.timeout, w.backends_request().send().promise)
                    .await
                    .map_err(|_| ClientError::Timeout(self.opts.timeout))??;
                let mut list = Vec::new();
                for b in resp.get()?.get_backends()? {
                    list.push(WorkerBackend {
                        backend: wire::backend_from_wire(b.get_backend()?)
                            .ok_or_else(|| ClientError::Invalid("backend auto in a list".into()))?,
                        device: b.get_device()?.to_string().map_err(|e| ClientError::Invalid(e.to_string()))?,
                        software: b.get_software(),
                    });
                }
                Ok(list)
            }
            .await;
            out.push((m.id, answer));
        }
        Ok(out)
    }
}

fn deadline_millis(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| d.as_millis().clamp(1, u128::from(u32::MAX)) as u32)
}
