// Shared by every image kernel: the host puts this file in front of the
// kernel's own source, which defines `fn shade(x: i32, y: i32) -> u32`.
//
// Images are storage buffers of packed RGBA8 pixels (R in the low byte, the
// byte order of the host's RGBA bytes read as little-endian u32), rows top to
// bottom, no padding. A kernel writes the rows of a destination band and reads
// a source window; both are placed in the coordinates of the whole image, so
// the same kernel runs on a whole image or on one row tile of it. The host
// makes every window large enough for the taps its band needs.
//
// Arithmetic is integer only, so every result equals the CPU reference
// (worker/src/compute/kernels.rs) bit for bit.

struct Pass {
    // Pixels per row of the source buffer.
    src_width: u32,
    // Rows held by the source buffer.
    src_rows: u32,
    // Image column of the source buffer's first column.
    src_x0: i32,
    // Image row of the source buffer's first row.
    src_y0: i32,
    // Pixels per row of the destination buffer.
    dst_width: u32,
    // Rows of the destination buffer (the band this pass writes).
    dst_rows: u32,
    // Image row of the destination buffer's first row.
    dst_y0: i32,
    // Size of the whole source image: taps past an edge read the edge pixel.
    image_width: i32,
    image_height: i32,
    // Kernel-specific arguments.
    arg0: i32,
    arg1: i32,
    arg2: i32,
    arg3: i32,
    arg4: i32,
    arg5: i32,
    arg6: i32,
}

@group(0) @binding(0) var<uniform> pass_args: Pass;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// The four channels of a packed pixel, 0..=255 each.
fn channels(p: u32) -> vec4<i32> {
    return vec4<i32>(vec4<u32>(p & 0xffu, (p >> 8u) & 0xffu, (p >> 16u) & 0xffu, p >> 24u));
}

// Channels clamped to a byte each and packed.
fn pack(c: vec4<i32>) -> u32 {
    let v = vec4<u32>(clamp(c, vec4<i32>(0), vec4<i32>(255)));
    return v.x | (v.y << 8u) | (v.z << 16u) | (v.w << 24u);
}

// The source pixel at image coordinates (x, y), which the window holds.
fn load(x: i32, y: i32) -> u32 {
    return src[u32(y - pass_args.src_y0) * pass_args.src_width + u32(x - pass_args.src_x0)];
}

// The source pixel at (x, y), or the nearest edge pixel when (x, y) is
// outside the image.
fn load_clamped(x: i32, y: i32) -> u32 {
    return load(clamp(x, 0, pass_args.image_width - 1), clamp(y, 0, pass_args.image_height - 1));
}

// `(sum + ½·2^shift) >> shift` with an arithmetic (flooring) shift, clamped
// to a byte by `pack`: kernels::round_shift.
fn round_shift(sum: vec4<i32>, shift: u32) -> vec4<i32> {
    return (sum + vec4<i32>(1 << (shift - 1u))) >> vec4<u32>(shift);
}

// BT.601 luma with weights of 256: kernels::luma.
fn luma(c: vec4<i32>) -> i32 {
    return (77 * c.x + 150 * c.y + 29 * c.z + 128) >> 8u;
}

// One invocation per destination pixel; a grid-stride loop covers the band
// when the host dispatched fewer workgroups than the band needs (the device's
// limit on workgroups per dimension).
@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.xy * 8u;
    for (var row = id.y; row < pass_args.dst_rows; row += stride.y) {
        let y = pass_args.dst_y0 + i32(row);
        for (var x = id.x; x < pass_args.dst_width; x += stride.x) {
            dst[row * pass_args.dst_width + x] = shade(i32(x), y);
        }
    }
}
