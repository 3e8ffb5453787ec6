// Further BLAKE3 rounds: each hashes the previous 32-byte digest, a single
// chunk of one 32-byte block. Drawn into a single pixel.

uniform uvec4 u_digest_lo;
uniform uvec4 u_digest_hi;
uniform int u_rounds;

layout(location = 0) out uvec4 o_digest_lo;
layout(location = 1) out uvec4 o_digest_hi;

void main() {
    uvec4 lo = u_digest_lo;
    uvec4 hi = u_digest_hi;
    for (int r = 0; r < u_rounds; ++r) {
        uvec4 cv_lo = IV_LO;
        uvec4 cv_hi = IV_HI;
        blake3_compress(cv_lo, cv_hi, lo, hi, uvec4(0u), uvec4(0u), uvec2(0u), 32u, CHUNK_START | CHUNK_END | ROOT);
        lo = cv_lo;
        hi = cv_hi;
    }
    o_digest_lo = lo;
    o_digest_hi = hi;
}
