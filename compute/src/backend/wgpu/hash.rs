//! SHA-256 and BLAKE3 on the device.
//!
//! - BLAKE3: one invocation per 1 KiB chunk computes the chunk chaining
//!   values in parallel; the parent tree is merged on the device too, one
//!   dispatch per level, so only the 32-byte hash comes back. (Merging on
//!   the host would read back 32 bytes per chunk to save a few dispatches.)
//! - SHA-256 is a chain of blocks, so one invocation walks them in order,
//!   [`SHA256_BLOCKS_PER_DISPATCH`] per dispatch, with the state kept in a
//!   device buffer between dispatches.
//! - Further rounds hash the previous 32-byte digest; one invocation loops
//!   over [`ROUNDS_PER_DISPATCH`] of them.
//!
//! Work per invocation is bounded because Mesa's llvmpipe/lavapipe silently
//! ends an invocation after 65535 loop iterations in all (and a real GPU's
//! watchdog resets a device stuck in one long dispatch). Dispatches are
//! submitted [`DISPATCHES_PER_SUBMISSION`] at a time, and the job's deadline
//! is checked between submissions. A message larger than the device's
//! buffer limit is uploaded in slices.

use std::time::Instant;

use super::context::{Gpu, Kernel, device_error};
use crate::{ComputeError, Deadline, StageTimes};

/// SHA-256 blocks one invocation compresses. A block is ~130 loop
/// iterations, so 256 stay well inside lavapipe's 65535.
const SHA256_BLOCKS_PER_DISPATCH: u32 = 256;
/// Re-hashing rounds one invocation runs, bounded for the same reason.
const ROUNDS_PER_DISPATCH: u32 = 256;
/// Sequential dispatches per submission: 512 KiB of SHA-256 or 8192 rounds
/// between two deadline checks.
const DISPATCHES_PER_SUBMISSION: usize = 32;

const SHA256_BLOCK: usize = 64;
const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const BLAKE3_CHUNK: usize = 1024;
/// BLAKE3's ROOT flag (`blake3.wgsl`).
const BLAKE3_ROOT: u32 = 8;

/// The SHA-256 of `data`, then of its digest `rounds − 1` more times.
pub(super) fn sha256(
    gpu: &Gpu,
    data: &[u8],
    rounds: u32,
    deadline: &Deadline,
    times: &mut StageTimes,
) -> Result<[u8; 32], ComputeError> {
    // Whole blocks go up straight from `data`; the rest and the padding
    // follow as a short tail.
    let whole = data.len() / SHA256_BLOCK * SHA256_BLOCK;
    let tail = sha256_tail(data);
    let slice_bytes = slice_bytes(gpu, SHA256_BLOCK)?;
    let state = gpu.checked("creating the SHA-256 state", || {
        Ok(gpu.storage_with("sha256 state", bytemuck::cast_slice(&SHA256_IV)))
    })?;
    for slice in data[..whole].chunks(slice_bytes).chain(tail.chunks(slice_bytes)) {
        deadline.check()?;
        let message = upload(gpu, "sha256 message", slice, times)?;
        let blocks = (slice.len() / SHA256_BLOCK) as u32;
        let batches = sequential_batches(blocks, SHA256_BLOCKS_PER_DISPATCH);
        for submission in batches.chunks(DISPATCHES_PER_SUBMISSION) {
            deadline.check()?;
            run(gpu, "SHA-256", times, |encoder| {
                for &(first, count) in submission {
                    let params = [first, count, 0, 0];
                    let buffers = [(1, &message), (2, &state)];
                    gpu.dispatch(encoder, Kernel::Sha256Blocks, bytemuck::cast_slice(&params), &buffers, (1, 1));
                }
            })?;
        }
    }
    rehash(gpu, Kernel::Sha256Rounds, (2, &state), rounds, |count| vec![0, count, 0, 0], deadline, times)?;
    let words = read_digest(gpu, &state, times)?;
    // SHA-256 writes its state words big-endian.
    Ok(digest_bytes(words, u32::to_be_bytes))
}

/// The uniform block of `blake3.wgsl`.
fn blake3_job(message_len: u32, first_chunk: u32, count: u32, root: u32, items: (u32, u32)) -> Vec<u32> {
    vec![message_len, first_chunk, count, root, items.0, items.1, 0, 0]
}

/// The BLAKE3 of `data`, then of its hash `rounds − 1` more times.
pub(super) fn blake3(
    gpu: &Gpu,
    data: &[u8],
    rounds: u32,
    deadline: &Deadline,
    times: &mut StageTimes,
) -> Result<[u8; 32], ComputeError> {
    // An empty input is one empty chunk.
    let chunks = data.len().div_ceil(BLAKE3_CHUNK).max(1);
    let chunk_count = u32::try_from(chunks)
        .map_err(|_| device_error(format!("{} bytes is more than 2^32 BLAKE3 chunks", data.len())))?;
    let node_bytes = chunks as u64 * 32;
    if node_bytes > gpu.max_buffer_bytes() {
        return Err(device_error(format!(
            "the {chunks} BLAKE3 chaining values need a {node_bytes}-byte buffer, more than this device's {}-byte limit",
            gpu.max_buffer_bytes()
        )));
    }
    let slice_bytes = slice_bytes(gpu, BLAKE3_CHUNK)?;
    // The tree's levels alternate between two buffers.
    let (mut nodes, mut spare) = gpu.checked("creating the BLAKE3 tree", || {
        Ok((gpu.storage("blake3 nodes", node_bytes), gpu.storage("blake3 nodes", node_bytes)))
    })?;
    // A lone chunk is the root itself.
    let chunk_root = if chunk_count == 1 { BLAKE3_ROOT } else { 0 };
    let slices: Box<dyn Iterator<Item = &[u8]>> =
        if data.is_empty() { Box::new(std::iter::once(data)) } else { Box::new(data.chunks(slice_bytes)) };
    for (index, slice) in slices.enumerate() {
        deadline.check()?;
        let message = upload(gpu, "blake3 message", slice, times)?;
        let first_chunk = (index * slice_bytes / BLAKE3_CHUNK) as u32;
        let count = slice.len().div_ceil(BLAKE3_CHUNK).max(1) as u32;
        run(gpu, "BLAKE3 chunks", times, |encoder| {
            for items in parallel_batches(gpu, count) {
                let params = blake3_job(slice.len() as u32, first_chunk, 0, chunk_root, items);
                let buffers = [(1, &message), (3, &nodes)];
                let groups = gpu.hash_groups(items.1 - items.0);
                gpu.dispatch(encoder, Kernel::Blake3Chunks, bytemuck::cast_slice(&params), &buffers, groups);
            }
        })?;
    }
    deadline.check()?;
    run(gpu, "BLAKE3 parents", times, |encoder| {
        let mut level = chunk_count;
        while level > 1 {
            let root = if level == 2 { BLAKE3_ROOT } else { 0 };
            for items in parallel_batches(gpu, level.div_ceil(2)) {
                let params = blake3_job(0, 0, level, root, items);
                let buffers = [(2, &nodes), (3, &spare)];
                let groups = gpu.hash_groups(items.1 - items.0);
                gpu.dispatch(encoder, Kernel::Blake3Parents, bytemuck::cast_slice(&params), &buffers, groups);
            }
            std::mem::swap(&mut nodes, &mut spare);
            level = level.div_ceil(2);
        }
    })?;
    let params = |count| blake3_job(0, 0, count, 0, (0, 0));
    rehash(gpu, Kernel::Blake3Rounds, (3, &nodes), rounds, params, deadline, times)?;
    let words = read_digest(gpu, &nodes, times)?;
    // BLAKE3 writes its output words little-endian.
    Ok(digest_bytes(words, u32::to_le_bytes))
}

/// `total` sequential steps as (first, count) batches of at most `per_dispatch`.
fn sequential_batches(total: u32, per_dispatch: u32) -> Vec<(u32, u32)> {
    (0..total).step_by(per_dispatch as usize).map(|first| (first, per_dispatch.min(total - first))).collect()
}

/// `items` independent items as (begin, end) ranges of at most one dispatch's
/// worth of invocations, so every invocation does exactly one item.
fn parallel_batches(gpu: &Gpu, items: u32) -> impl Iterator<Item = (u32, u32)> {
    let per_dispatch = gpu.hash_invocations_per_dispatch();
    (0..items).step_by(per_dispatch as usize).map(move |begin| (begin, items.min(begin.saturating_add(per_dispatch))))
}

/// SHA-256's padding after the last whole block: the rest of the message,
/// 0x80, zeroes, then the length in bits, to a multiple of 64 bytes.
fn sha256_tail(data: &[u8]) -> Vec<u8> {
    let rest = &data[data.len() / SHA256_BLOCK * SHA256_BLOCK..];
    let tail_len = if rest.len() < SHA256_BLOCK - 8 { SHA256_BLOCK } else { 2 * SHA256_BLOCK };
    let mut tail = vec![0u8; tail_len];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    tail[tail_len - 8..].copy_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    tail
}

/// The largest slice of a message, in whole `unit`s, that fits one buffer.
fn slice_bytes(gpu: &Gpu, unit: usize) -> Result<usize, ComputeError> {
    let max = usize::try_from(gpu.max_buffer_bytes()).unwrap_or(usize::MAX);
    match max / unit * unit {
        0 => Err(device_error(format!(
            "this device's {max}-byte buffer limit is smaller than one {unit}-byte unit of the hash"
        ))),
        bytes => Ok(bytes),
    }
}

fn upload(gpu: &Gpu, label: &str, bytes: &[u8], times: &mut StageTimes) -> Result<::wgpu::Buffer, ComputeError> {
    let start = Instant::now();
    let buffer = gpu.checked("uploading the message", || {
        let buffer = gpu.storage_with(label, bytes);
        gpu.flush_uploads()?;
        Ok(buffer)
    })?;
    times.upload += start.elapsed();
    Ok(buffer)
}

/// Records dispatches with `record`, then runs them and waits.
fn run(
    gpu: &Gpu,
    what: &str,
    times: &mut StageTimes,
    record: impl FnOnce(&mut ::wgpu::CommandEncoder),
) -> Result<(), ComputeError> {
    let start = Instant::now();
    gpu.checked(what, || {
        let mut encoder = gpu.encoder();
        record(&mut encoder);
        gpu.submit_and_wait(encoder)
    })?;
    times.kernel += start.elapsed();
    Ok(())
}

/// Hashes the digest in `digest` (bound at the given binding) `rounds − 1`
/// more times; `params` makes a dispatch's uniform block from its count.
fn rehash(
    gpu: &Gpu,
    kernel: Kernel,
    (binding, digest): (u32, &::wgpu::Buffer),
    rounds: u32,
    params: impl Fn(u32) -> Vec<u32>,
    deadline: &Deadline,
    times: &mut StageTimes,
) -> Result<(), ComputeError> {
    let batches = sequential_batches(rounds.saturating_sub(1), ROUNDS_PER_DISPATCH);
    for submission in batches.chunks(DISPATCHES_PER_SUBMISSION) {
        deadline.check()?;
        run(gpu, "re-hashing the digest", times, |encoder| {
            for &(_, count) in submission {
                gpu.dispatch(encoder, kernel, bytemuck::cast_slice(&params(count)), &[(binding, digest)], (1, 1));
            }
        })?;
    }
    Ok(())
}

fn read_digest(gpu: &Gpu, buffer: &::wgpu::Buffer, times: &mut StageTimes) -> Result<[u32; 8], ComputeError> {
    let start = Instant::now();
    let bytes = gpu.checked("reading the digest back", || gpu.read(buffer, 32))?;
    times.download += start.elapsed();
    // GPUs store words little-endian.
    Ok(std::array::from_fn(|i| {
        u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
    }))
}

fn digest_bytes(words: [u32; 8], to_bytes: fn(u32) -> [u8; 4]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&to_bytes(word));
    }
    out
}
