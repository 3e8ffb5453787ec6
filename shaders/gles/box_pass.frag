// One direction of a box blur, all four channels: the rounded mean of
// 2·radius + 1 values (kernels::box_mean).

// (1, 0) for the horizontal pass, (0, 1) for the vertical one.
uniform ivec2 u_step;
uniform int u_radius;

void main() {
    ivec2 position = output_position();
    ivec4 sum = ivec4(0);
    for (int d = -u_radius; d <= u_radius; ++d) {
        sum += source_pixel(position + d * u_step);
    }
    o_pixel = uvec4((sum + u_radius) / (2 * u_radius + 1));
}
