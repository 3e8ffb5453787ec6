//! SHA-256 and BLAKE3 in fragment shaders, bit-exact with the `cpu` backend.
//!
//! The message goes to the GPU as an RGBA32UI texture of 32-bit words (four
//! per texel), converted on the host to the byte order each hash reads.
//!
//! - BLAKE3 is a tree, so it runs wide: one fragment per 1 KiB chunk computes
//!   the chunk's chaining value into a grid of two RGBA32UI targets (words
//!   0–3 and 4–7), then one pass per tree level pairs neighbours into their
//!   parent until one node, the root, is left. The whole tree is merged on
//!   the GPU: only the 32-byte root comes back, and a level costs one draw.
//! - SHA-256 is a chain, so one fragment does the blocks in order, a batch per
//!   draw, with the 8-word state carried by the host between batches (which
//!   is where the deadline is checked).
//! - Further rounds hash a 32-byte digest each; a single fragment runs a batch
//!   of them per draw.

use std::time::Instant;

use wimpy_schema::job::{HashAlgo, HashOp};

use super::gpu::{GLES3_MIN_TEXTURE_SIZE, Gpu, Texture, TextureFormat, Uniforms, device_error};
use super::programs::ProgramId;
use crate::{ComputeError, Deadline, StageTimes};

/// Texels per row of a word texture: the smallest largest-texture-side any
/// OpenGL ES 3.0 device has, so the layout fits every device.
const WORD_ROW_TEXELS: usize = GLES3_MIN_TEXTURE_SIZE as usize;
/// SHA-256 blocks per draw: 64 KiB, a few milliseconds for one GPU thread,
/// far from any driver's watchdog. See also [`LOOP_ITERATION_LIMIT`].
const SHA256_BLOCKS_PER_DRAW: usize = 1024;
/// Chaining values per row of a BLAKE3 grid.
const BLAKE3_GRID_WIDTH: usize = 1024;
/// BLAKE3 chunks per draw: 8 MiB, a whole number of grid rows.
const BLAKE3_CHUNKS_PER_DRAW: usize = 8 * BLAKE3_GRID_WIDTH;
/// Rounds per draw, between deadline checks (as often as the `cpu` backend checks).
const ROUNDS_PER_DRAW: u32 = 4096;

/// Loop iterations llvmpipe lets one shader invocation run, all loops
/// together; past it, loops silently end early. A SHA-256 block or round
/// costs 5 iterations (the compression runs 4 groups of 16 written-out
/// rounds), a BLAKE3 round at most 8 (if its 7 rounds are not unrolled).
const LOOP_ITERATION_LIMIT: usize = 65_535;
const _: () = assert!(SHA256_BLOCKS_PER_DRAW * 5 < LOOP_ITERATION_LIMIT);
const _: () = assert!(ROUNDS_PER_DRAW as usize * 8 < LOOP_ITERATION_LIMIT);

const CHUNK_LEN: usize = 1024;
/// BLAKE3's ROOT flag.
const ROOT: u32 = 8;
/// The SHA-256 initial hash value (also BLAKE3's IV).
const IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Hashes `data` `op.rounds` times.
pub(super) fn hash(
    gpu: &mut Gpu,
    data: &[u8],
    op: HashOp,
    deadline: &Deadline,
    times: &mut StageTimes,
) -> Result<[u8; 32], ComputeError> {
    let mut digest = match op.algo {
        HashAlgo::Blake3 => blake3(gpu, data, deadline, times)?,
        HashAlgo::Sha256 => sha256(gpu, data, deadline, times)?,
    };
    let program = match op.algo {
        HashAlgo::Blake3 => ProgramId::Blake3Rounds,
        HashAlgo::Sha256 => ProgramId::Sha256Rounds,
    };
    let mut remaining = op.rounds.saturating_sub(1);
    if remaining > 0 {
        let target = DigestTarget::new(gpu)?;
        while remaining > 0 {
            deadline.check()?;
            let batch = remaining.min(ROUNDS_PER_DRAW);
            let (lo, hi) = split(&digest);
            digest = target.draw(gpu, program, times, |u| {
                u.uvec4("u_digest_lo", lo);
                u.uvec4("u_digest_hi", hi);
                u.int("u_rounds", batch as i32);
            })?;
            remaining -= batch;
        }
    }
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(digest) {
        bytes.copy_from_slice(&match op.algo {
            HashAlgo::Blake3 => word.to_le_bytes(),
            HashAlgo::Sha256 => word.to_be_bytes(),
        });
    }
    Ok(out)
}

fn split(words: &[u32; 8]) -> ([u32; 4], [u32; 4]) {
    ([words[0], words[1], words[2], words[3]], [words[4], words[5], words[6], words[7]])
}

fn join(lo: [u32; 4], hi: [u32; 4]) -> [u32; 8] {
    [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
}

/// A 1×1 pair of RGBA32UI targets for programs that output one 8-word value.
struct DigestTarget {
    lo: Texture,
    hi: Texture,
}

impl DigestTarget {
    fn new(gpu: &mut Gpu) -> Result<DigestTarget, ComputeError> {
        Ok(DigestTarget {
            lo: gpu.texture(TextureFormat::Rgba32, 1, 1)?,
            hi: gpu.texture(TextureFormat::Rgba32, 1, 1)?,
        })
    }

    fn draw(
        &self,
        gpu: &mut Gpu,
        program: ProgramId,
        times: &mut StageTimes,
        set_uniforms: impl FnOnce(&mut Uniforms<'_>),
    ) -> Result<[u32; 8], ComputeError> {
        let start = Instant::now();
        gpu.draw(program, &[self.lo, self.hi], 0, 0, 1, 1, set_uniforms)?;
        times.kernel += start.elapsed();
        let start = Instant::now();
        let words = join(gpu.read_rgba32_texel(&self.lo, 0, 0)?, gpu.read_rgba32_texel(&self.hi, 0, 0)?);
        times.download += start.elapsed();
        Ok(words)
    }
}

/// Uploads `words` into `texture`, padded with zero words to its size.
fn upload_words(
    gpu: &mut Gpu,
    texture: &Texture,
    mut words: Vec<u32>,
    times: &mut StageTimes,
) -> Result<(), ComputeError> {
    let start = Instant::now();
    words.resize(texture.width as usize * texture.height as usize * 4, 0);
    let uploaded = gpu.upload(texture, &words);
    times.upload += start.elapsed();
    uploaded
}

/// A word texture `WORD_ROW_TEXELS` wide with room for `words` words.
fn word_texture(gpu: &mut Gpu, words: usize) -> Result<Texture, ComputeError> {
    let rows = words.div_ceil(4 * WORD_ROW_TEXELS).max(1);
    gpu.texture(TextureFormat::Rgba32, WORD_ROW_TEXELS as u32, rows as u32)
}

/// The SHA-256 state after the padded message.
fn sha256(gpu: &mut Gpu, data: &[u8], deadline: &Deadline, times: &mut StageTimes) -> Result<[u32; 8], ComputeError> {
    // Padding: 0x80, zeroes, then the bit length, to a multiple of 64 bytes.
    let full_blocks = data.len() / 64;
    let rest = &data[full_blocks * 64..];
    let mut tail = Vec::with_capacity(128);
    tail.extend_from_slice(rest);
    tail.push(0x80);
    tail.resize(if rest.len() < 56 { 56 } else { 120 }, 0);
    tail.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    let total_blocks = full_blocks + tail.len() / 64;
    let block =
        |i: usize| if i < full_blocks { &data[i * 64..i * 64 + 64] } else { &tail[(i - full_blocks) * 64..][..64] };

    let words_texture = word_texture(gpu, total_blocks.min(SHA256_BLOCKS_PER_DRAW) * 16)?;
    let target = DigestTarget::new(gpu)?;
    let mut state = IV;
    for first in (0..total_blocks).step_by(SHA256_BLOCKS_PER_DRAW) {
        deadline.check()?;
        let count = (total_blocks - first).min(SHA256_BLOCKS_PER_DRAW);
        let words: Vec<u32> = (first..first + count)
            .flat_map(|i| block(i).chunks_exact(4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]])))
            .collect();
        upload_words(gpu, &words_texture, words, times)?;
        let (lo, hi) = split(&state);
        state = target.draw(gpu, ProgramId::Sha256Blocks, times, |u| {
            u.sampler("u_words", &words_texture);
            u.int("u_block_count", count as i32);
            u.uvec4("u_state_lo", lo);
            u.uvec4("u_state_hi", hi);
        })?;
    }
    Ok(state)
}

/// The BLAKE3 root output's first 8 words (the digest).
fn blake3(gpu: &mut Gpu, data: &[u8], deadline: &Deadline, times: &mut StageTimes) -> Result<[u32; 8], ComputeError> {
    // The empty input is one empty chunk.
    let chunk_count = data.len().div_ceil(CHUNK_LEN).max(1);
    let grid_width = chunk_count.min(BLAKE3_GRID_WIDTH);
    let grid_rows = chunk_count.div_ceil(grid_width);
    if grid_rows > gpu.max_texture_size as usize {
        return Err(device_error(format!(
            "{} bytes make {chunk_count} BLAKE3 chunks, more than a {grid_width}x{} grid holds",
            data.len(),
            gpu.max_texture_size
        )));
    }
    let grid = |gpu: &mut Gpu| -> Result<[Texture; 2], ComputeError> {
        Ok([
            gpu.texture(TextureFormat::Rgba32, grid_width as u32, grid_rows as u32)?,
            gpu.texture(TextureFormat::Rgba32, grid_width as u32, grid_rows as u32)?,
        ])
    };
    let mut level = grid(gpu)?;

    // Chunks, in batches of whole grid rows.
    let words_texture = word_texture(gpu, chunk_count.min(BLAKE3_CHUNKS_PER_DRAW) * CHUNK_LEN / 4)?;
    for first in (0..chunk_count).step_by(BLAKE3_CHUNKS_PER_DRAW) {
        deadline.check()?;
        let count = (chunk_count - first).min(BLAKE3_CHUNKS_PER_DRAW);
        let bytes = &data[(first * CHUNK_LEN).min(data.len())..((first + count) * CHUNK_LEN).min(data.len())];
        // Little-endian words; the last chunk's partial word and block are
        // padded with zeroes, as the compression function expects.
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|w| {
                let mut word = [0u8; 4];
                word[..w.len()].copy_from_slice(w);
                u32::from_le_bytes(word)
            })
            .collect();
        upload_words(gpu, &words_texture, words, times)?;
        let last_chunk_len = bytes.len() - (count - 1) * CHUNK_LEN;
        let first_row = first / grid_width;
        let rows = count.div_ceil(grid_width);
        let start = Instant::now();
        gpu.draw(ProgramId::Blake3Chunks, &level, 0, first_row as u32, grid_width as u32, rows as u32, |u| {
            u.sampler("u_words", &words_texture);
            u.int("u_grid_width", grid_width as i32);
            u.int("u_first_chunk", first as i32);
            u.int("u_chunk_count", count as i32);
            u.int("u_last_chunk_len", last_chunk_len as i32);
            u.uvec2("u_first_counter", [first as u32, ((first as u64) >> 32) as u32]);
            u.uint("u_root", if chunk_count == 1 { ROOT } else { 0 });
        })?;
        times.kernel += start.elapsed();
    }
    gpu.release(words_texture);

    // Tree levels, ping-ponging between two grids.
    let mut nodes = chunk_count;
    if nodes > 1 {
        let mut next = grid(gpu)?;
        while nodes > 1 {
            deadline.check()?;
            let parents = nodes.div_ceil(2);
            let start = Instant::now();
            let children = level;
            gpu.draw(
                ProgramId::Blake3Parents,
                &next,
                0,
                0,
                grid_width as u32,
                parents.div_ceil(grid_width) as u32,
                |u| {
                    u.sampler("u_children_lo", &children[0]);
                    u.sampler("u_children_hi", &children[1]);
                    u.int("u_child_count", nodes as i32);
                    u.uint("u_root", if parents == 1 { ROOT } else { 0 });
                },
            )?;
            times.kernel += start.elapsed();
            std::mem::swap(&mut level, &mut next);
            nodes = parents;
        }
    }
    let start = Instant::now();
    let root = join(gpu.read_rgba32_texel(&level[0], 0, 0)?, gpu.read_rgba32_texel(&level[1], 0, 0)?);
    times.download += start.elapsed();
    Ok(root)
}
