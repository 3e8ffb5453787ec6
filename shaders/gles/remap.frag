// Crop, flip and rotate: every output pixel copies one input pixel, found by
// an integer affine map of its coordinates.

// input.x = dot(u_map_x, (output.x, output.y, 1)), likewise for y.
uniform ivec3 u_map_x;
uniform ivec3 u_map_y;

void main() {
    ivec3 o = ivec3(output_position(), 1);
    ivec2 p = ivec2(u_map_x.x * o.x + u_map_x.y * o.y + u_map_x.z, u_map_y.x * o.x + u_map_y.y * o.y + u_map_y.z);
    o_pixel = uvec4(source_pixel(p));
}
