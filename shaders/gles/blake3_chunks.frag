// BLAKE3 chunk chaining values, one fragment per 1 KiB chunk, all in
// parallel. The target is a grid of chaining values (two RGBA32UI
// attachments: words 0-3 and 4-7), chunk n at (n % width, n / width).

// RGBA32UI, little-endian words; chunk j of this batch is texels 64·j to
// 64·j + 63 in row-major order. Bytes past the input are zero.
uniform usampler2D u_words;
// Width of the chaining-value grid.
uniform int u_grid_width;
// Grid index of this batch's first chunk.
uniform int u_first_chunk;
uniform int u_chunk_count;
// Bytes in the batch's last chunk: 1024, fewer for the input's last chunk,
// 0 for the empty input.
uniform int u_last_chunk_len;
// Chunk counter of the batch's first chunk (low word, high word).
uniform uvec2 u_first_counter;
// ROOT when this chunk is the whole input, else 0.
uniform uint u_root;

layout(location = 0) out uvec4 o_cv_lo;
layout(location = 1) out uvec4 o_cv_hi;

uvec4 word_texel(int t) {
    int width = textureSize(u_words, 0).x;
    return texelFetch(u_words, ivec2(t % width, t / width), 0);
}

void main() {
    ivec2 cell = ivec2(gl_FragCoord.xy);
    int j = cell.y * u_grid_width + cell.x - u_first_chunk;
    if (j < 0 || j >= u_chunk_count) {
        discard;
    }
    int len = j == u_chunk_count - 1 ? u_last_chunk_len : 1024;
    int blocks = max(1, (len + 63) / 64);
    uint counter_lo = u_first_counter.x + uint(j);
    uvec2 counter = uvec2(counter_lo, u_first_counter.y + (counter_lo < u_first_counter.x ? 1u : 0u));
    uvec4 cv_lo = IV_LO;
    uvec4 cv_hi = IV_HI;
    for (int b = 0; b < blocks; ++b) {
        int t = j * 64 + b * 4;
        bool last = b == blocks - 1;
        uint flags = (b == 0 ? CHUNK_START : 0u) | (last ? CHUNK_END | u_root : 0u);
        uint block_len = last ? uint(len - 64 * b) : 64u;
        blake3_compress(cv_lo, cv_hi, word_texel(t), word_texel(t + 1), word_texel(t + 2), word_texel(t + 3), counter,
                        block_len, flags);
    }
    o_cv_lo = cv_lo;
    o_cv_hi = cv_hi;
}
