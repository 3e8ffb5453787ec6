// Luma into R, G and B; alpha kept.

void main() {
    ivec4 p = source_pixel(output_position());
    int y = luma(p);
    o_pixel = uvec4(ivec4(y, y, y, p.a));
}
