// A user 3×3 or 5×5 kernel of Q12 weights over R, G and B, edges clamped;
// alpha passes through.
//
// arg0: kernel size (3 or 5).

// size × size weights, row-major.
@group(0) @binding(3) var<storage, read> weights: array<i32>;

fn shade(x: i32, y: i32) -> u32 {
    let size = pass_args.arg0;
    let r = size / 2;
    var sum = vec4<i32>(0);
    for (var ky = 0; ky < size; ky++) {
        for (var kx = 0; kx < size; kx++) {
            sum += weights[ky * size + kx] * channels(load_clamped(x + kx - r, y + ky - r));
        }
    }
    let rgb = round_shift(sum, 12u).xyz;
    return pack(vec4<i32>(rgb, channels(load(x, y)).w));
}
