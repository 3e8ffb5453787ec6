// The last pass of a sharpen: kernels::unsharp of each of R, G and B against
// its Gaussian-blurred value, (v·256 + (v - blurred)·amount + 128) >> 8,
// clamped, amount in Q8; alpha kept from the unblurred source.

// The blurred image, covering at least the rectangle being drawn.
uniform usampler2D u_blurred;
uniform ivec2 u_blurred_origin;
uniform int u_amount_q8;

void main() {
    ivec2 position = output_position();
    ivec4 p = source_pixel(position);
    ivec3 blurred = ivec3(texelFetch(u_blurred, position - u_blurred_origin, 0).rgb);
    ivec3 t = p.rgb * 256 + (p.rgb - blurred) * u_amount_q8 + 128;
    o_pixel = uvec4(ivec4(clamp(t, 0, 0xffff) >> 8, p.a));
}
