// Shared by every image pass.
//
// Images are RGBA8UI textures read with texelFetch: every value is an exact
// integer 0..255, never a normalised float, so the shaders compute the same
// sums as worker/src/compute/kernels.rs and round them the same way.
//
// A texture holds one rectangle of its stage's image: the whole image, or a
// tile plus the halo its kernel reads. u_src_origin is where the source
// texture's texel (0, 0) lies in image coordinates; u_dst_origin is the same
// for the texture being drawn. Shaders work in image coordinates throughout.

uniform usampler2D u_src;
uniform ivec2 u_src_origin;
uniform ivec2 u_dst_origin;

out uvec4 o_pixel;

// The image coordinates of the pixel this fragment writes.
ivec2 output_position() {
    return ivec2(gl_FragCoord.xy) + u_dst_origin;
}

// The source pixel at image coordinates p. A tap outside the texture reads
// its nearest edge texel: where the texture's rectangle ends at the image's
// edge this is the kernels' clamped-edge rule, and where it ends inside the
// image the halo is wide enough that no pixel that is kept reads past it.
ivec4 source_pixel(ivec2 p) {
    ivec2 local = clamp(p - u_src_origin, ivec2(0), textureSize(u_src, 0) - 1);
    return ivec4(texelFetch(u_src, local, 0));
}

// BT.601 luma with weights of 256 (kernels::luma).
int luma(ivec4 p) {
    return (77 * p.r + 150 * p.g + 29 * p.b + 128) >> 8;
}

// (sum + 2^(shift-1)) >> shift, floored, clamped to a byte (kernels::round_shift).
ivec4 round_shift(ivec4 sum, int shift) {
    return clamp((sum + (1 << (shift - 1))) >> shift, 0, 255);
}
