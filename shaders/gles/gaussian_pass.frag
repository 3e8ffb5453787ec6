// One direction of a Gaussian blur, all four channels: Q14 weights
// (kernels::Kernel1d), rounded back to 8 bits after the pass.

// (1, 0) for the horizontal pass, (0, 1) for the vertical one.
uniform ivec2 u_step;
uniform int u_radius;
// R32I, 2·radius + 1 texels wide: the weights, left to right.
uniform isampler2D u_weights;

void main() {
    ivec2 position = output_position();
    ivec4 sum = ivec4(0);
    for (int t = 0; t <= 2 * u_radius; ++t) {
        int weight = texelFetch(u_weights, ivec2(t, 0), 0).r;
        sum += weight * source_pixel(position + (t - u_radius) * u_step);
    }
    o_pixel = uvec4(round_shift(sum, BLUR_SHIFT));
}
