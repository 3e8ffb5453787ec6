// kernels::brightness_contrast on R, G and B; alpha kept:
// ((v - 128)·c + (128 + b)·256 + 128) >> 8, clamped, with c in Q8.

uniform int u_brightness;
uniform int u_contrast_q8;

void main() {
    ivec4 p = source_pixel(output_position());
    ivec3 t = (p.rgb - 128) * u_contrast_q8 + (128 + u_brightness) * 256 + 128;
    o_pixel = uvec4(ivec4(clamp(t, 0, 0xffff) >> 8, p.a));
}
