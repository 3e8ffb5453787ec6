// One level of the BLAKE3 tree: entry i of this level is the parent of
// entries 2i and 2i + 1 of the level below, or entry 2i itself when it is the
// last and has no sibling. Pairing neighbours level by level, carrying an odd
// last node up unchanged, builds exactly BLAKE3's tree (whose left subtrees
// hold a power of two of chunks). Entries sit in grids as in blake3_chunks.frag.

uniform usampler2D u_children_lo;
uniform usampler2D u_children_hi;
uniform int u_child_count;
// ROOT on the level with a single entry, else 0.
uniform uint u_root;

layout(location = 0) out uvec4 o_cv_lo;
layout(location = 1) out uvec4 o_cv_hi;

ivec2 cell_of(int index) {
    int width = textureSize(u_children_lo, 0).x;
    return ivec2(index % width, index / width);
}

void main() {
    ivec2 cell = ivec2(gl_FragCoord.xy);
    int left = 2 * (cell.y * textureSize(u_children_lo, 0).x + cell.x);
    if (left >= u_child_count) {
        discard;
    }
    uvec4 left_lo = texelFetch(u_children_lo, cell_of(left), 0);
    uvec4 left_hi = texelFetch(u_children_hi, cell_of(left), 0);
    if (left + 1 == u_child_count) {
        o_cv_lo = left_lo;
        o_cv_hi = left_hi;
        return;
    }
    uvec4 right_lo = texelFetch(u_children_lo, cell_of(left + 1), 0);
    uvec4 right_hi = texelFetch(u_children_hi, cell_of(left + 1), 0);
    uvec4 cv_lo = IV_LO;
    uvec4 cv_hi = IV_HI;
    blake3_compress(cv_lo, cv_hi, left_lo, left_hi, right_lo, right_hi, uvec2(0u), 64u, PARENT | u_root);
    o_cv_lo = cv_lo;
    o_cv_hi = cv_hi;
}
