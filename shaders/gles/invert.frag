// 255 - value for R, G and B; alpha kept.

void main() {
    ivec4 p = source_pixel(output_position());
    o_pixel = uvec4(ivec4(255 - p.rgb, p.a));
}
