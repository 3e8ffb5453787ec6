// Sobel gradient magnitude of luma into R, G and B; alpha passes through.

fn luma_at(x: i32, y: i32) -> i32 {
    return luma(channels(load_clamped(x, y)));
}

// √n rounded to the nearest integer, capped at 255: kernels::round_sqrt_255.
// The float square root is only a first guess; the integer steps make it exact.
fn round_sqrt_255(n: u32) -> i32 {
    // (255 + ½)² = 65280.25: from here on the rounded root is at least 255.
    if n >= 65280u {
        return 255;
    }
    var k = u32(sqrt(f32(n)));
    while k * k > n {
        k -= 1u;
    }
    while (k + 1u) * (k + 1u) <= n {
        k += 1u;
    }
    // (k + ½)² = k² + k + ¼, so √n rounds up past k exactly when n > k² + k.
    return i32(select(k, k + 1u, n > k * k + k));
}

fn shade(x: i32, y: i32) -> u32 {
    let gx = luma_at(x + 1, y - 1) + 2 * luma_at(x + 1, y) + luma_at(x + 1, y + 1)
        - luma_at(x - 1, y - 1) - 2 * luma_at(x - 1, y) - luma_at(x - 1, y + 1);
    let gy = luma_at(x - 1, y + 1) + 2 * luma_at(x, y + 1) + luma_at(x + 1, y + 1)
        - luma_at(x - 1, y - 1) - 2 * luma_at(x, y - 1) - luma_at(x + 1, y - 1);
    let m = round_sqrt_255(u32(gx * gx + gy * gy));
    return pack(vec4<i32>(m, m, m, channels(load(x, y)).w));
}
