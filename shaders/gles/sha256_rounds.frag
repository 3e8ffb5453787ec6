// Further SHA-256 rounds: each hashes the previous 32-byte digest, which pads
// to one block: the digest's 8 words, 0x80, zeroes, and the length, 256 bits.
// Drawn into a single pixel.

uniform uvec4 u_digest_lo;
uniform uvec4 u_digest_hi;
uniform int u_rounds;

layout(location = 0) out uvec4 o_digest_lo;
layout(location = 1) out uvec4 o_digest_hi;

void main() {
    uvec4 lo = u_digest_lo;
    uvec4 hi = u_digest_hi;
    for (int r = 0; r < u_rounds; ++r) {
        uvec4 state_lo = SHA256_IV_LO;
        uvec4 state_hi = SHA256_IV_HI;
        sha256_compress(state_lo, state_hi, lo, hi, uvec4(0x80000000u, 0u, 0u, 0u), uvec4(0u, 0u, 0u, 256u));
        lo = state_lo;
        hi = state_hi;
    }
    o_digest_lo = lo;
    o_digest_hi = hi;
}
