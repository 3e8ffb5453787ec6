//! `compute` and `computeBatch`: jobs over values this worker owns, run on
//! the engine's backends while the RPC core goes on serving.

use std::sync::Arc;
use std::time::Duration;

use wimpy_schema::job::{Job, wire};
use wimpy_schema::wimpy_capnp::{compute_result, worker};
use wimpy_schema::{ComputeFailure, ComputeFailureKind, Failure, LimitKind};

use super::{MAX_INLINE_VALUE, WorkerState, streams};
use wimpy_compute::{ComputeError, JobOutput};

/// Result bytes one `computeBatch` reply carries inline, at most.
const BATCH_REPLY_BYTES: usize = 6 << 20;

/// A job's outcome before it is written into a message.
enum Outcome {
    Done(JobOutput),
    NotFound,
    Refused(Failure),
}

/// The schema form of a compute error.
pub fn failure_of(e: &ComputeError) -> Failure {
    use ComputeFailureKind as K;
    let (kind, limit, actual) = match e {
        ComputeError::BadJob(_) => (K::BadJob, 0, 0),
        ComputeError::BadImage(_) => (K::BadImage, 0, 0),
        ComputeError::EmptyImage { .. } => (K::EmptyImage, 0, 0),
        ComputeError::TooManyPixels { pixels, limit, .. } => (K::TooManyPixels, *limit, *pixels),
        ComputeError::ValueTooLarge { actual, limit } => (K::ValueTooLarge, *limit, *actual),
        ComputeError::DeadlineExceeded { elapsed_ms, limit_ms } => (K::DeadlineExceeded, *limit_ms, *elapsed_ms),
        ComputeError::CropOutside { .. } => (K::CropOutside, 0, 0),
        ComputeError::BackendUnavailable(_) => (K::BackendUnavailable, 0, 0),
        ComputeError::Overloaded { queued, limit, .. } => (K::BackendBusy, *limit as u64, *queued as u64),
        ComputeError::Encode(_) => (K::Encode, 0, 0),
        ComputeError::Device { .. } => (K::Device, 0, 0),
    };
    Failure::Compute(ComputeFailure { kind, message: e.to_string(), limit, actual })
}

/// Reads the value at `key` (if this worker serves it at `epoch`) and runs the job.
async fn run_one(
    state: &Arc<WorkerState>,
    key: &[u8],
    epoch: u64,
    job: Job,
    backend: Option<wimpy_compute::BackendKind>,
    deadline: Option<Duration>,
) -> Outcome {
    let read = match state.route(key, epoch) {
        Ok(()) => state.read_committed(key, |s| s.get(key)).await,
        Err(f) => Err(f),
    };
    let value = match read {
        Ok(Some(v)) => v,
        Ok(None) => return Outcome::NotFound,
        Err(f) => return Outcome::Refused(f),
    };
    match state.engine.run(job, value, backend, deadline).await {
        Ok(out) => Outcome::Done(out),
        Err(e) => Outcome::Refused(failure_of(&e)),
    }
}

/// Writes everything but the result bytes.
fn write_output(state: &WorkerState, out: &JobOutput, mut b: wimpy_schema::wimpy_capnp::compute_output::Builder<'_>) {
    b.set_worker(state.id);
    // This job's own count is gone by now: it counts as one of them.
    b.set_jobs((state.engine.jobs() + 1).min(u32::MAX as usize) as u32);
    b.set_backend(wire::backend_to_wire(Some(out.backend.kind)));
    b.set_device(&out.backend.device);
    b.set_software(out.backend.software);
    let (w, h) = out.size.unwrap_or((0, 0));
    b.set_width(w);
    b.set_height(h);
    wire::write_times(&out.times, b.init_times());
}

fn result_too_large(len: usize) -> Failure {
    Failure::TooLarge { kind: LimitKind::Result, limit: MAX_INLINE_VALUE as u64, actual: len as u64 }
}

/// Writes an inline outcome (results over the inline limit are refused).
fn write_inline(state: &WorkerState, outcome: &Outcome, mut r: compute_result::Builder<'_>) {
    match outcome {
        Outcome::Done(out) if out.bytes.len() > MAX_INLINE_VALUE => {
            result_too_large(out.bytes.len()).write(r.init_failure())
        }
        Outcome::Done(out) => {
            let mut b = r.init_ok();
            write_output(state, out, b.reborrow());
            b.set_value(&out.bytes);
        }
        Outcome::NotFound => r.set_not_found(()),
        Outcome::Refused(f) => f.write(r.init_failure()),
    }
}

fn read_job(
    job: wimpy_schema::wimpy_capnp::job::Reader<'_>,
) -> Result<(Job, Option<wimpy_compute::BackendKind>, Option<Duration>), Failure> {
    let (job, backend, millis) = wire::read_job(job).map_err(|e| failure_of(&ComputeError::BadJob(e)))?;
    Ok((job, backend, (millis > 0).then(|| Duration::from_millis(u64::from(millis)))))
}

pub async fn compute(
    state: &Arc<WorkerState>,
    params: worker::ComputeParams,
    mut results: worker::ComputeResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let key = p.get_key()?;
    let outcome = match read_job(p.get_job()?) {
        Ok((job, backend, deadline)) => run_one(state, key, p.get_epoch(), job, backend, deadline).await,
        Err(f) => Outcome::Refused(f),
    };
    let sink = if p.has_sink() { Some(p.get_sink()?) } else { None };
    match (&outcome, sink) {
        (Outcome::Done(out), Some(sink)) if out.bytes.len() > MAX_INLINE_VALUE => {
            let sent = streams::send_value(&out.bytes, &sink).await?;
            let mut b = results.get().init_result().init_ok();
            write_output(state, out, b.reborrow());
            b.set_streamed(sent);
        }
        _ => write_inline(state, &outcome, results.get().init_result()),
    }
    Ok(())
}

pub async fn compute_batch(
    state: &Arc<WorkerState>,
    params: worker::ComputeBatchParams,
    mut results: worker::ComputeBatchResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let keys = p.get_keys()?;
    let epoch = p.get_epoch();
    let outcomes: Vec<Outcome> = match read_job(p.get_job()?) {
        Ok((job, backend, deadline)) => {
            use futures::StreamExt;
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.map(<[u8]>::to_vec)).collect::<Result<_, _>>()?;
            // As many jobs in flight as the backend runs at once: a batch
            // never fills the backend's queue by itself.
            let width = state.engine.parallelism(backend);
            futures::stream::iter(keys)
                .map(|key| {
                    let job = job.clone();
                    async move { run_one(state, &key, epoch, job, backend, deadline).await }
                })
                .buffered(width)
                .collect()
                .await
        }
        Err(f) => (0..keys.len()).map(|_| Outcome::Refused(f.clone())).collect(),
    };
    // The whole reply must stay under the reader limit (8 MiB): once the
    // inline results reach BATCH_REPLY_BYTES, later ones are refused as too
    // large and the SDK fetches them one at a time.
    let mut inline = 0usize;
    let mut list = results.get().init_results(outcomes.len() as u32);
    for (i, outcome) in outcomes.iter().enumerate() {
        let r = list.reborrow().get(i as u32);
        match outcome {
            Outcome::Done(out) if inline + out.bytes.len() > BATCH_REPLY_BYTES => {
                result_too_large(out.bytes.len()).write(r.init_failure())
            }
            Outcome::Done(out) => {
                inline += out.bytes.len();
                write_inline(state, outcome, r)
            }
            _ => write_inline(state, outcome, r),
        }
    }
    Ok(())
}
