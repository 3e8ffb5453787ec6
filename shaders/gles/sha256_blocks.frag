// A batch of SHA-256 blocks, in order, from a state to the next: the message
// is sequential, so one fragment does it, drawn into a single pixel. The host
// pads the message and carries the state from batch to batch.

// RGBA32UI, big-endian words; block b is texels 4b to 4b + 3 in row-major order.
uniform usampler2D u_words;
uniform int u_block_count;
uniform uvec4 u_state_lo;
uniform uvec4 u_state_hi;

layout(location = 0) out uvec4 o_state_lo;
layout(location = 1) out uvec4 o_state_hi;

uvec4 word_texel(int t) {
    int width = textureSize(u_words, 0).x;
    return texelFetch(u_words, ivec2(t % width, t / width), 0);
}

void main() {
    uvec4 lo = u_state_lo;
    uvec4 hi = u_state_hi;
    for (int b = 0; b < u_block_count; ++b) {
        int t = 4 * b;
        sha256_compress(lo, hi, word_texel(t), word_texel(t + 1), word_texel(t + 2), word_texel(t + 3));
    }
    o_state_lo = lo;
    o_state_hi = hi;
}
