// One pass of a separable blur over all four channels, edges clamped.
//
// arg0: radius r (2r + 1 taps).
// arg1: 1 for the vertical pass, 0 for the horizontal one.
// arg2: 1 for a box blur (unit weights, the rounded mean kernels::box_mean),
//       0 for Q14 weights (kernels::round_shift by BLUR_SHIFT).

@group(0) @binding(3) var<storage, read> weights: array<i32>;

fn shade(x: i32, y: i32) -> u32 {
    let r = pass_args.arg0;
    let vertical = pass_args.arg1 == 1;
    var sum = vec4<i32>(0);
    for (var t = -r; t <= r; t++) {
        var p: u32;
        if vertical {
            p = load_clamped(x, y + t);
        } else {
            p = load_clamped(x + t, y);
        }
        sum += weights[t + r] * channels(p);
    }
    if pass_args.arg2 == 1 {
        // Sums are non-negative, so integer division floors like the reference's u32 division.
        return pack((sum + vec4<i32>(r)) / vec4<i32>(2 * r + 1));
    }
    return pack(round_shift(sum, 14u));
}
