// Per-pixel colour operations; alpha passes through.
//
// arg0: 0 grayscale, 1 invert, 2 brightness/contrast, 3 threshold.
// arg1: brightness (mode 2) or threshold level (mode 3).
// arg2: contrast in Q8 (mode 2).

fn shade(x: i32, y: i32) -> u32 {
    let c = channels(load(x, y));
    let mode = pass_args.arg0;
    if mode == 0 {
        let l = luma(c);
        return pack(vec4<i32>(l, l, l, c.w));
    } else if mode == 1 {
        return pack(vec4<i32>(vec3<i32>(255) - c.xyz, c.w));
    } else if mode == 2 {
        // kernels::brightness_contrast: ((v − 128)·c + (128 + b)·256 + 128) >> 8, clamped.
        let t = (c.xyz - vec3<i32>(128)) * pass_args.arg2 + vec3<i32>((128 + pass_args.arg1) * 256 + 128);
        return pack(vec4<i32>(clamp(t, vec3<i32>(0), vec3<i32>(0xffff)) >> vec3<u32>(8u), c.w));
    }
    let v = select(0, 255, luma(c) >= pass_args.arg1);
    return pack(vec4<i32>(v, v, v, c.w));
}
