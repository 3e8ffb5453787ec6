// The SHA-256 compression function (FIPS 180-4; worker/src/compute/backend/cpu/sha256.rs).
// Message words are big-endian u32 values, already converted on the host;
// uint arithmetic wraps mod 2^32.
//
// The rounds are written out with macros rather than looped over a word
// array: the schedule stays in 16 named registers instead of an indexed
// array (slow on GPUs), and each block costs 4 loop iterations, not 64
// (llvmpipe stops a shader invocation's loops after 65535 iterations in all).

const uint K[64] = uint[64](
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u);

const uvec4 SHA256_IV_LO = uvec4(0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au);
const uvec4 SHA256_IV_HI = uvec4(0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u);

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32u - (n))))
#define BIG_SIGMA0(x) (ROTR(x, 2u) ^ ROTR(x, 13u) ^ ROTR(x, 22u))
#define BIG_SIGMA1(x) (ROTR(x, 6u) ^ ROTR(x, 11u) ^ ROTR(x, 25u))
#define SMALL_SIGMA0(x) (ROTR(x, 7u) ^ ROTR(x, 18u) ^ ((x) >> 3))
#define SMALL_SIGMA1(x) (ROTR(x, 17u) ^ ROTR(x, 19u) ^ ((x) >> 10))

// One round. Instead of shifting a..h down a register each round, the
// caller passes them rotated by one: the new e lands in d, the new a in h.
#define ROUND(a, b, c, d, e, f, g, h, k, w) t1 = h + BIG_SIGMA1(e) + ((e & f) ^ (~e & g)) + k + w; d += t1; h = t1 + BIG_SIGMA0(a) + ((a & b) ^ (a & c) ^ (b & c));

// Eight rounds bring the names back to where they started.
#define EIGHT_ROUNDS(i, w0, w1, w2, w3, w4, w5, w6, w7) ROUND(a, b, c, d, e, f, g, h, K[i], w0) ROUND(h, a, b, c, d, e, f, g, K[i + 1], w1) ROUND(g, h, a, b, c, d, e, f, K[i + 2], w2) ROUND(f, g, h, a, b, c, d, e, K[i + 3], w3) ROUND(e, f, g, h, a, b, c, d, K[i + 4], w4) ROUND(d, e, f, g, h, a, b, c, K[i + 5], w5) ROUND(c, d, e, f, g, h, a, b, K[i + 6], w6) ROUND(b, c, d, e, f, g, h, a, K[i + 7], w7)

// Compresses the 16-word block m0..m3 into the state (words a-d, e-h).
void sha256_compress(inout uvec4 state_lo, inout uvec4 state_hi, uvec4 m0, uvec4 m1, uvec4 m2, uvec4 m3) {
    // The message schedule as a ring of the last 16 words: w[i] replaces w[i - 16].
    uint w0 = m0.x, w1 = m0.y, w2 = m0.z, w3 = m0.w, w4 = m1.x, w5 = m1.y, w6 = m1.z, w7 = m1.w;
    uint w8 = m2.x, w9 = m2.y, w10 = m2.z, w11 = m2.w, w12 = m3.x, w13 = m3.y, w14 = m3.z, w15 = m3.w;
    uint a = state_lo.x, b = state_lo.y, c = state_lo.z, d = state_lo.w;
    uint e = state_hi.x, f = state_hi.y, g = state_hi.z, h = state_hi.w;
    uint t1;
    for (int group = 0; group < 4; ++group) {
        if (group > 0) {
            // w[i] = σ1(w[i-2]) + w[i-7] + σ0(w[i-15]) + w[i-16], for the next 16 i, in order.
            w0 += SMALL_SIGMA1(w14) + w9 + SMALL_SIGMA0(w1);
            w1 += SMALL_SIGMA1(w15) + w10 + SMALL_SIGMA0(w2);
            w2 += SMALL_SIGMA1(w0) + w11 + SMALL_SIGMA0(w3);
            w3 += SMALL_SIGMA1(w1) + w12 + SMALL_SIGMA0(w4);
            w4 += SMALL_SIGMA1(w2) + w13 + SMALL_SIGMA0(w5);
            w5 += SMALL_SIGMA1(w3) + w14 + SMALL_SIGMA0(w6);
            w6 += SMALL_SIGMA1(w4) + w15 + SMALL_SIGMA0(w7);
            w7 += SMALL_SIGMA1(w5) + w0 + SMALL_SIGMA0(w8);
            w8 += SMALL_SIGMA1(w6) + w1 + SMALL_SIGMA0(w9);
            w9 += SMALL_SIGMA1(w7) + w2 + SMALL_SIGMA0(w10);
            w10 += SMALL_SIGMA1(w8) + w3 + SMALL_SIGMA0(w11);
            w11 += SMALL_SIGMA1(w9) + w4 + SMALL_SIGMA0(w12);
            w12 += SMALL_SIGMA1(w10) + w5 + SMALL_SIGMA0(w13);
            w13 += SMALL_SIGMA1(w11) + w6 + SMALL_SIGMA0(w14);
            w14 += SMALL_SIGMA1(w12) + w7 + SMALL_SIGMA0(w15);
            w15 += SMALL_SIGMA1(w13) + w8 + SMALL_SIGMA0(w0);
        }
        int i = 16 * group;
        EIGHT_ROUNDS(i, w0, w1, w2, w3, w4, w5, w6, w7)
        EIGHT_ROUNDS(i + 8, w8, w9, w10, w11, w12, w13, w14, w15)
    }
    state_lo += uvec4(a, b, c, d);
    state_hi += uvec4(e, f, g, h);
}
