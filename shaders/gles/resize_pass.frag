// One axis of a resize (kernels::ResizePass), all four channels: output pixel
// i is the sum of weight k times input pixel start(i) + k, rounded from
// u_precision fraction bits.

// (1, 0) for the horizontal pass, (0, 1) for the vertical one.
uniform ivec2 u_axis;
// Output coordinate (along the axis) of row 0 of the tap textures.
uniform int u_first_output;
// R32I, one texel per output pixel: start(i), in input coordinates.
uniform isampler2D u_tap_starts;
// R32I, one row per output pixel, u_tap_count texels wide. Rows with fewer
// taps are padded with zero weights, whose (edge-clamped) reads add nothing.
uniform isampler2D u_tap_weights;
uniform int u_tap_count;
uniform int u_precision;

void main() {
    ivec2 position = output_position();
    int row = (u_axis.x * position.x + u_axis.y * position.y) - u_first_output;
    int start = texelFetch(u_tap_starts, ivec2(row, 0), 0).r;
    // The coordinate across the axis is the output's; along it, the tap's.
    ivec2 across = position * (ivec2(1) - u_axis);
    ivec4 sum = ivec4(0);
    for (int k = 0; k < u_tap_count; ++k) {
        int weight = texelFetch(u_tap_weights, ivec2(k, row), 0).r;
        sum += weight * source_pixel(across + (start + k) * u_axis);
    }
    o_pixel = uvec4(round_shift(sum, u_precision));
}
