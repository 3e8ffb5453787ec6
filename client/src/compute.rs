//! Compute jobs from the SDK: sent to the worker that owns the key (the data
//! does not move; the result does), or fanned out over many keys to every
//! owner at once.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use wimpy_schema::LimitKind;
use wimpy_schema::job::{BackendKind, Job, StageTimes, wire};
use wimpy_schema::wimpy_capnp::{byte_sink, compute_output, compute_result};

use crate::client::{Attempt, Route, failure_to};
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

    /// Runs `req` over the value at `key` on the worker that owns it.
    /// `Ok(None)` when there is no value at `key`.
    pub async fn compute(&self, key: &[u8], req: &ComputeRequest) -> Result<Option<ComputeOutput>, ClientError> {
        self.with_owner_within(self.compute_limit(req), key, Route::Head, |w, epoch, _| async move {
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
        .await
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

    /// Runs `req` over every key in `keys`: one batch per owning worker, all
    /// owners at once. One result per key, in order; keys whose owner moved
    /// meanwhile, or whose result is too large for a batch, are redone one at
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
        for (i, key) in keys.iter().enumerate() {
            match self.route(key, Route::Head) {
                Ok((epoch, owner)) => by_owner.entry(owner).or_insert((epoch, Vec::new())).1.push(i),
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
                            Ok(Attempt::Done(v)) => results[i] = Some(Ok(v)),
                            Ok(Attempt::Retry | Attempt::Busy) => redo.push(i),
                            Err(ClientError::TooLarge { kind: LimitKind::Result, .. }) => redo.push(i),
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
