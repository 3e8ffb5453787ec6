// The BLAKE3 compression function (worker/src/compute/backend/cpu/blake3.rs),
// on uvec4 rows of the 4×4 state: one G call mixes all four columns at once,
// and the diagonal round rotates rows 1–3 so the diagonals line up as
// columns. Words are little-endian u32 values; uint arithmetic wraps mod 2^32.

const uint CHUNK_START = 1u;
const uint CHUNK_END = 2u;
const uint PARENT = 4u;
const uint ROOT = 8u;

const uvec4 IV_LO = uvec4(0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au);
const uvec4 IV_HI = uvec4(0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u);

uvec4 rotate_right(uvec4 x, uint n) {
    return (x >> n) | (x << (32u - n));
}

void mix_columns(inout uvec4 a, inout uvec4 b, inout uvec4 c, inout uvec4 d, uvec4 mx, uvec4 my) {
    a = a + b + mx;
    d = rotate_right(d ^ a, 16u);
    c = c + d;
    b = rotate_right(b ^ c, 12u);
    a = a + b + my;
    d = rotate_right(d ^ a, 8u);
    c = c + d;
    b = rotate_right(b ^ c, 7u);
}

// Compresses the 16-word block m0..m3 (words 0-3, 4-7, 8-11, 12-15) into the
// chaining value cv_lo, cv_hi (words 0-3, 4-7), which it replaces with the
// first 8 words of the output.
void blake3_compress(inout uvec4 cv_lo, inout uvec4 cv_hi, uvec4 m0, uvec4 m1, uvec4 m2, uvec4 m3, uvec2 counter,
                     uint block_len, uint flags) {
    uvec4 a = cv_lo;
    uvec4 b = cv_hi;
    uvec4 c = IV_LO;
    uvec4 d = uvec4(counter.x, counter.y, block_len, flags);
    for (int r = 0; r < 7; ++r) {
        // G(0,4,8,12) .. G(3,7,11,15) with message words (0,1) .. (6,7).
        mix_columns(a, b, c, d, uvec4(m0.xz, m1.xz), uvec4(m0.yw, m1.yw));
        // G(0,5,10,15), G(1,6,11,12), G(2,7,8,13), G(3,4,9,14) with words (8,9) .. (14,15).
        b = b.yzwx;
        c = c.zwxy;
        d = d.wxyz;
        mix_columns(a, b, c, d, uvec4(m2.xz, m3.xz), uvec4(m2.yw, m3.yw));
        b = b.wxyz;
        c = c.zwxy;
        d = d.yzwx;
        // The message permutation [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8].
        uvec4 p0 = uvec4(m0.z, m1.z, m0.w, m2.z);
        uvec4 p1 = uvec4(m1.w, m0.x, m1.x, m3.y);
        uvec4 p2 = uvec4(m0.y, m2.w, m3.x, m1.y);
        uvec4 p3 = uvec4(m2.y, m3.z, m3.w, m2.x);
        m0 = p0;
        m1 = p1;
        m2 = p2;
        m3 = p3;
    }
    cv_lo = a ^ c;
    cv_hi = b ^ d;
}
