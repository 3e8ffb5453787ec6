// A user size × size kernel of Q12 weights over R, G and B; alpha kept.

uniform int u_size;
// R32I, size × size texels: the weights, row-major.
uniform isampler2D u_weights;

void main() {
    ivec2 position = output_position();
    int radius = u_size / 2;
    ivec4 sum = ivec4(0);
    for (int ky = 0; ky < u_size; ++ky) {
        for (int kx = 0; kx < u_size; ++kx) {
            int weight = texelFetch(u_weights, ivec2(kx, ky), 0).r;
            sum += weight * source_pixel(position + ivec2(kx - radius, ky - radius));
        }
    }
    ivec4 result = round_shift(sum, CONV_SHIFT);
    o_pixel = uvec4(ivec4(result.rgb, source_pixel(position).a));
}
