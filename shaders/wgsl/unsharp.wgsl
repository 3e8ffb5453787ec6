// The last pass of an unsharp mask: each colour channel pushed away from its
// blurred value (kernels::unsharp); alpha passes through.
//
// arg0: amount in Q8.

// The blurred band, laid out like the destination.
@group(0) @binding(3) var<storage, read> blurred: array<u32>;

fn shade(x: i32, y: i32) -> u32 {
    let v = channels(load(x, y));
    let b = channels(blurred[u32(y - pass_args.dst_y0) * pass_args.dst_width + u32(x)]);
    let t = v.xyz * 256 + (v.xyz - b.xyz) * pass_args.arg0 + vec3<i32>(128);
    return pack(vec4<i32>(clamp(t, vec3<i32>(0), vec3<i32>(0xffff)) >> vec3<u32>(8u), v.w));
}
