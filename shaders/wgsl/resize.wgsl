// One pass of a resize (kernels::ResizePass) over all four channels: each
// destination pixel is a weighted sum of a run of source pixels along one
// axis, the weights fixed-point at the pass's precision.
//
// arg0: precision (fraction bits of the weights).
// arg1: 1 for the vertical pass (taps per destination row of this band),
//       0 for the horizontal pass (taps per destination column).

// A header of three words per destination row or column (first source
// pixel in image coordinates, tap count, offset of its first weight in this
// array), then the weights.
@group(0) @binding(3) var<storage, read> taps: array<i32>;

fn shade(x: i32, y: i32) -> u32 {
    let vertical = pass_args.arg1 == 1;
    let i = u32(select(x, y - pass_args.dst_y0, vertical));
    let start = taps[3u * i];
    let count = taps[3u * i + 1u];
    let first_weight = taps[3u * i + 2u];
    var sum = vec4<i32>(0);
    for (var k = 0; k < count; k++) {
        var p: u32;
        if vertical {
            p = load(x, start + k);
        } else {
            p = load(start + k, y);
        }
        sum += taps[first_weight + k] * channels(p);
    }
    return pack(round_shift(sum, u32(pass_args.arg0)));
}
