//! BLAKE3 (the hash function, 32-byte output), written from the
//! specification: 1 KiB chunks of 64-byte blocks, chunk chaining values
//! merged up a binary tree whose left subtrees hold a power of two of chunks.

use super::sha256::IV;

const CHUNK_LEN: usize = 1024;
const BLOCK_LEN: usize = 64;
const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const PARENT: u32 = 4;
const ROOT: u32 = 8;
const MSG_PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];

#[allow(clippy::too_many_arguments)]
fn g(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize, mx: u32, my: u32) {
    s[a] = s[a].wrapping_add(s[b]).wrapping_add(mx);
    s[d] = (s[d] ^ s[a]).rotate_right(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_right(12);
    s[a] = s[a].wrapping_add(s[b]).wrapping_add(my);
    s[d] = (s[d] ^ s[a]).rotate_right(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_right(7);
}

/// The compression function; returns the first 8 words of the output.
fn compress(cv: &[u32; 8], block: &[u32; 16], counter: u64, block_len: u32, flags: u32) -> [u32; 8] {
    let mut s = [
        cv[0],
        cv[1],
        cv[2],
        cv[3],
        cv[4],
        cv[5],
        cv[6],
        cv[7],
        IV[0],
        IV[1],
        IV[2],
        IV[3],
        counter as u32,
        (counter >> 32) as u32,
        block_len,
        flags,
    ];
    let mut m = *block;
    for round in 0..7 {
        g(&mut s, 0, 4, 8, 12, m[0], m[1]);
        g(&mut s, 1, 5, 9, 13, m[2], m[3]);
        g(&mut s, 2, 6, 10, 14, m[4], m[5]);
        g(&mut s, 3, 7, 11, 15, m[6], m[7]);
        g(&mut s, 0, 5, 10, 15, m[8], m[9]);
        g(&mut s, 1, 6, 11, 12, m[10], m[11]);
        g(&mut s, 2, 7, 8, 13, m[12], m[13]);
        g(&mut s, 3, 4, 9, 14, m[14], m[15]);
        if round < 6 {
            m = std::array::from_fn(|i| m[MSG_PERMUTATION[i]]);
        }
    }
    std::array::from_fn(|i| s[i] ^ s[i + 8])
}

fn words(block: &[u8]) -> [u32; 16] {
    let mut padded = [0u8; BLOCK_LEN];
    padded[..block.len()].copy_from_slice(block);
    std::array::from_fn(|i| u32::from_le_bytes(padded[i * 4..i * 4 + 4].try_into().unwrap_or_default()))
}

/// The last compression of a node, left undone so the caller can add ROOT.
#[derive(Clone, Copy)]
struct Output {
    cv: [u32; 8],
    block: [u32; 16],
    counter: u64,
    block_len: u32,
    flags: u32,
}

impl Output {
    fn chaining_value(&self) -> [u32; 8] {
        compress(&self.cv, &self.block, self.counter, self.block_len, self.flags)
    }
}

/// A chunk (1..=1024 bytes, or 0 for empty input) number `counter`.
fn chunk(data: &[u8], counter: u64) -> Output {
    let mut cv = IV;
    let blocks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(BLOCK_LEN).collect() };
    let last = blocks.len() - 1;
    for (i, block) in blocks.iter().enumerate() {
        let start = if i == 0 { CHUNK_START } else { 0 };
        if i == last {
            return Output {
                cv,
                block: words(block),
                counter,
                block_len: block.len() as u32,
                flags: start | CHUNK_END,
            };
        }
        cv = compress(&cv, &words(block), counter, BLOCK_LEN as u32, start);
    }
    unreachable!("a chunk has at least one block")
}

fn parent(left: [u32; 8], right: [u32; 8]) -> Output {
    let mut block = [0u32; 16];
    block[..8].copy_from_slice(&left);
    block[8..].copy_from_slice(&right);
    Output { cv: IV, block, counter: 0, block_len: BLOCK_LEN as u32, flags: PARENT }
}

/// The subtree over `data`, whose first chunk is number `counter`.
fn subtree(data: &[u8], counter: u64) -> Output {
    if data.len() <= CHUNK_LEN {
        return chunk(data, counter);
    }
    // The left subtree takes the largest power of two of whole chunks that
    // leaves at least one byte for the right.
    let chunks = data.len().div_ceil(CHUNK_LEN);
    let left_chunks = 1usize << (usize::BITS - 1 - (chunks - 1).leading_zeros());
    let split = left_chunks * CHUNK_LEN;
    let left = subtree(&data[..split], counter);
    let right = subtree(&data[split..], counter + left_chunks as u64);
    parent(left.chaining_value(), right.chaining_value())
}

/// The BLAKE3 hash of `data`.
pub fn blake3(data: &[u8]) -> [u8; 32] {
    let root = subtree(data, 0);
    let words = compress(&root.cv, &root.block, root.counter, root.block_len, root.flags | ROOT);
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}
