// SHA-256 (FIPS 180-4) in u32 arithmetic.
//
// SHA-256 is a chain: every block needs the state the block before left, so
// one invocation walks the blocks in order. The state lives in a storage
// buffer between dispatches, which lets the host feed a long message in
// slices (and check the job's deadline between them). The host pads the
// message; this shader only compresses whole blocks.
//
// A block takes ~130 loop iterations, and Mesa's llvmpipe/lavapipe silently
// ends an invocation after 65535 in all, so the host gives one dispatch at
// most a few hundred blocks (or rounds).

struct Sha256Job {
    // First 64-byte block of `message` to compress.
    first_block: u32,
    // Blocks to compress (`blocks`), or rounds of re-hashing (`rounds`).
    count: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> job: Sha256Job;
// Message bytes, four to a word in little-endian order.
@group(0) @binding(1) var<storage, read> message: array<u32>;
// The hash state H0..H7; after the last block, the digest as big-endian words.
@group(0) @binding(2) var<storage, read_write> state: array<u32, 8>;

var<private> K: array<u32, 64> = array<u32, 64>(
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
);

var<private> IV: array<u32, 8> = array<u32, 8>(
    0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
);

fn rotr(x: u32, n: u32) -> u32 {
    return (x >> n) | (x << (32u - n));
}

fn byte_swap(x: u32) -> u32 {
    return (x >> 24u) | ((x >> 8u) & 0xff00u) | ((x << 8u) & 0xff0000u) | (x << 24u);
}

// Compresses one block, whose 16 big-endian words are w[0..16], into h.
fn compress(h: ptr<function, array<u32, 8>>, w: ptr<function, array<u32, 64>>) {
    for (var i = 16u; i < 64u; i++) {
        let w15 = (*w)[i - 15u];
        let w2 = (*w)[i - 2u];
        let s0 = rotr(w15, 7u) ^ rotr(w15, 18u) ^ (w15 >> 3u);
        let s1 = rotr(w2, 17u) ^ rotr(w2, 19u) ^ (w2 >> 10u);
        (*w)[i] = (*w)[i - 16u] + s0 + (*w)[i - 7u] + s1;
    }
    var a = (*h)[0];
    var b = (*h)[1];
    var c = (*h)[2];
    var d = (*h)[3];
    var e = (*h)[4];
    var f = (*h)[5];
    var g = (*h)[6];
    var hh = (*h)[7];
    for (var i = 0u; i < 64u; i++) {
        let s1 = rotr(e, 6u) ^ rotr(e, 11u) ^ rotr(e, 25u);
        let ch = (e & f) ^ (~e & g);
        let t1 = hh + s1 + ch + K[i] + (*w)[i];
        let s0 = rotr(a, 2u) ^ rotr(a, 13u) ^ rotr(a, 22u);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    (*h)[0] += a;
    (*h)[1] += b;
    (*h)[2] += c;
    (*h)[3] += d;
    (*h)[4] += e;
    (*h)[5] += f;
    (*h)[6] += g;
    (*h)[7] += hh;
}

// Compresses `job.count` blocks of the message from `job.first_block` into
// the state.
@compute @workgroup_size(1)
fn blocks() {
    var h: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        h[i] = state[i];
    }
    var w: array<u32, 64>;
    for (var block = 0u; block < job.count; block++) {
        let base = (job.first_block + block) * 16u;
        for (var i = 0u; i < 16u; i++) {
            w[i] = byte_swap(message[base + i]);
        }
        compress(&h, &w);
    }
    for (var i = 0u; i < 8u; i++) {
        state[i] = h[i];
    }
}

// Replaces the digest in `state` by the SHA-256 of its 32 bytes, `job.count`
// times. A digest's bytes are its words in big-endian order, which is how
// SHA-256 reads message words, so the digest words are the message words.
@compute @workgroup_size(1)
fn rounds() {
    var digest: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        digest[i] = state[i];
    }
    var w: array<u32, 64>;
    for (var round = 0u; round < job.count; round++) {
        for (var i = 0u; i < 8u; i++) {
            w[i] = digest[i];
        }
        // Padding of a 32-byte message: 0x80, zeroes, the length in bits (256).
        w[8] = 0x80000000u;
        for (var i = 9u; i < 15u; i++) {
            w[i] = 0u;
        }
        w[15] = 256u;
        var h = IV;
        compress(&h, &w);
        digest = h;
    }
    for (var i = 0u; i < 8u; i++) {
        state[i] = digest[i];
    }
}
