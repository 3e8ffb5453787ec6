// One triangle that covers the whole viewport, from gl_VertexID alone (no
// vertex buffers): (-1, -1), (3, -1), (-1, 3). Every fragment shader then
// works out which pixel it writes from gl_FragCoord.

void main() {
    vec2 corner = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    gl_Position = vec4(corner, 0.0, 1.0);
}
