// 255 where luma >= the level, else 0, into R, G and B; alpha kept.

uniform int u_level;

void main() {
    ivec4 p = source_pixel(output_position());
    int v = luma(p) >= u_level ? 255 : 0;
    o_pixel = uvec4(ivec4(v, v, v, p.a));
}
