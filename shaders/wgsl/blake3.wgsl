// BLAKE3 (32-byte output) in u32 arithmetic.
//
// The input splits into 1 KiB chunks, each hashed on its own into a chaining
// value (CV): `chunks` runs one invocation per chunk. The CVs then merge up a
// binary tree: `parents` merges one level (pairs of adjacent nodes; an odd
// last node moves up unchanged), and the host dispatches it level by level
// until one node is left. Pairing level by level builds exactly BLAKE3's
// tree, whose left subtrees hold the largest power of two of chunks. The last
// compression (of the only chunk, or of the top parent) carries ROOT, and its
// first eight words are the hash.
//
// The host splits every dispatch so that one invocation does one item and
// `rounds` a bounded batch: Mesa's llvmpipe/lavapipe ends an invocation after
// 65535 loop iterations in all, silently, and a chunk alone takes ~2300.

const BLOCK_LEN: u32 = 64u;
const CHUNK_LEN: u32 = 1024u;
const CHUNK_START: u32 = 1u;
const CHUNK_END: u32 = 2u;
const PARENT: u32 = 4u;
const ROOT: u32 = 8u;

struct Blake3Job {
    // Bytes of input in `message`.
    message_len: u32,
    // Index (and counter) of the first chunk in `message`.
    first_chunk: u32,
    // Nodes at the level being merged (`parents`), or rounds of re-hashing
    // (`rounds`).
    count: u32,
    // ROOT when this dispatch makes the root node, else 0.
    root: u32,
    // The items of this dispatch, one per invocation: chunks of `message`
    // (`chunks`) or nodes of the next level (`parents`).
    begin: u32,
    end: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> job: Blake3Job;
// Input bytes, four to a word in little-endian order.
@group(0) @binding(1) var<storage, read> message: array<u32>;
// CVs of the level being merged, eight words each.
@group(0) @binding(2) var<storage, read> nodes_in: array<u32>;
// CVs this dispatch writes, eight words each; the hash ends in words 0..8.
@group(0) @binding(3) var<storage, read_write> nodes_out: array<u32>;

var<private> IV: array<u32, 8> = array<u32, 8>(
    0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
);

var<private> MSG_PERMUTATION: array<u32, 16> = array<u32, 16>(2u, 6u, 3u, 10u, 7u, 0u, 4u, 13u, 1u, 11u, 12u, 5u, 9u, 14u, 15u, 8u);

fn rotr(x: u32, n: u32) -> u32 {
    return (x >> n) | (x << (32u - n));
}

fn g(s: ptr<function, array<u32, 16>>, a: u32, b: u32, c: u32, d: u32, mx: u32, my: u32) {
    (*s)[a] = (*s)[a] + (*s)[b] + mx;
    (*s)[d] = rotr((*s)[d] ^ (*s)[a], 16u);
    (*s)[c] = (*s)[c] + (*s)[d];
    (*s)[b] = rotr((*s)[b] ^ (*s)[c], 12u);
    (*s)[a] = (*s)[a] + (*s)[b] + my;
    (*s)[d] = rotr((*s)[d] ^ (*s)[a], 8u);
    (*s)[c] = (*s)[c] + (*s)[d];
    (*s)[b] = rotr((*s)[b] ^ (*s)[c], 7u);
}

// The compression function's first eight output words (a CV, or the hash
// when `flags` has ROOT). Block counters stay below 2³² (the host checks),
// so the counter's high word is zero.
fn compress(cv: array<u32, 8>, block: array<u32, 16>, counter: u32, block_len: u32, flags: u32) -> array<u32, 8> {
    var s = array<u32, 16>(
        cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
        IV[0], IV[1], IV[2], IV[3], counter, 0u, block_len, flags,
    );
    var m = block;
    for (var round = 0u; round < 7u; round++) {
        g(&s, 0u, 4u, 8u, 12u, m[0], m[1]);
        g(&s, 1u, 5u, 9u, 13u, m[2], m[3]);
        g(&s, 2u, 6u, 10u, 14u, m[4], m[5]);
        g(&s, 3u, 7u, 11u, 15u, m[6], m[7]);
        g(&s, 0u, 5u, 10u, 15u, m[8], m[9]);
        g(&s, 1u, 6u, 11u, 12u, m[10], m[11]);
        g(&s, 2u, 7u, 8u, 13u, m[12], m[13]);
        g(&s, 3u, 4u, 9u, 14u, m[14], m[15]);
        var permuted: array<u32, 16>;
        for (var i = 0u; i < 16u; i++) {
            permuted[i] = m[MSG_PERMUTATION[i]];
        }
        m = permuted;
    }
    var out: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        out[i] = s[i] ^ s[i + 8u];
    }
    return out;
}

// The message word at byte `offset`, bytes at or past `message_len` read as
// zero (a short last block is zero-padded).
fn message_word(offset: u32) -> u32 {
    if offset >= job.message_len {
        return 0u;
    }
    let word = message[offset / 4u];
    let valid = job.message_len - offset;
    if valid >= 4u {
        return word;
    }
    return word & ((1u << (valid * 8u)) - 1u);
}

// One invocation per chunk: its CV into nodes_out[first_chunk + i].
@compute @workgroup_size(64)
fn chunks(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = job.begin + id.x;
    if i < job.end {
        let start = i * CHUNK_LEN;
        let len = min(CHUNK_LEN, job.message_len - start);
        // An empty input is one chunk of one empty block.
        let blocks = max(1u, (len + BLOCK_LEN - 1u) / BLOCK_LEN);
        var cv = IV;
        for (var b = 0u; b < blocks; b++) {
            var block: array<u32, 16>;
            for (var k = 0u; k < 16u; k++) {
                block[k] = message_word(start + b * BLOCK_LEN + 4u * k);
            }
            let last = b + 1u == blocks;
            var flags = select(0u, CHUNK_START, b == 0u);
            if last {
                flags |= CHUNK_END | job.root;
            }
            let block_len = select(BLOCK_LEN, len - b * BLOCK_LEN, last);
            cv = compress(cv, block, job.first_chunk + i, block_len, flags);
        }
        let node = job.first_chunk + i;
        for (var k = 0u; k < 8u; k++) {
            nodes_out[node * 8u + k] = cv[k];
        }
    }
}

// One invocation per node of the next level up: the parent of nodes 2j and
// 2j + 1, or node 2j itself when it is the odd one out.
@compute @workgroup_size(64)
fn parents(@builtin(global_invocation_id) id: vec3<u32>) {
    let j = job.begin + id.x;
    if j < job.end {
        let left = 2u * j;
        var cv: array<u32, 8>;
        if left + 1u < job.count {
            var block: array<u32, 16>;
            for (var k = 0u; k < 16u; k++) {
                block[k] = nodes_in[left * 8u + k];
            }
            cv = compress(IV, block, 0u, BLOCK_LEN, PARENT | job.root);
        } else {
            for (var k = 0u; k < 8u; k++) {
                cv[k] = nodes_in[left * 8u + k];
            }
        }
        for (var k = 0u; k < 8u; k++) {
            nodes_out[j * 8u + k] = cv[k];
        }
    }
}

// Replaces the hash in nodes_out[0..8] by the BLAKE3 of its 32 bytes,
// `job.count` times. A hash's bytes are its words in little-endian order,
// which is how BLAKE3 reads message words: the hash words are the first half
// of the only block of the only chunk.
@compute @workgroup_size(1)
fn rounds() {
    var digest: array<u32, 8>;
    for (var k = 0u; k < 8u; k++) {
        digest[k] = nodes_out[k];
    }
    for (var round = 0u; round < job.count; round++) {
        var block: array<u32, 16>;
        for (var k = 0u; k < 8u; k++) {
            block[k] = digest[k];
        }
        digest = compress(IV, block, 0u, 32u, CHUNK_START | CHUNK_END | ROOT);
    }
    for (var k = 0u; k < 8u; k++) {
        nodes_out[k] = digest[k];
    }
}
