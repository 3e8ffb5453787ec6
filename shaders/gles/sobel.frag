// Sobel gradient magnitude of luma, rounded exactly (kernels::round_sqrt_255),
// into R, G and B; alpha kept.

int luma_at(ivec2 p) {
    return luma(source_pixel(p));
}

// sqrt(n) rounded to the nearest integer, capped at 255. The float square
// root is a guess within a step or two; integer steps make it exact.
int round_sqrt_255(int n) {
    int k = int(sqrt(float(n)));
    for (int i = 0; i < 4 && k * k > n; ++i) {
        k -= 1;
    }
    for (int i = 0; i < 4 && (k + 1) * (k + 1) <= n; ++i) {
        k += 1;
    }
    // (k + 1/2)^2 = k^2 + k + 1/4, so sqrt(n) rounds up past k exactly when n > k^2 + k.
    int rounded = n > k * k + k ? k + 1 : k;
    return min(rounded, 255);
}

void main() {
    ivec2 p = output_position();
    int top_left = luma_at(p + ivec2(-1, -1));
    int top = luma_at(p + ivec2(0, -1));
    int top_right = luma_at(p + ivec2(1, -1));
    int left = luma_at(p + ivec2(-1, 0));
    int right = luma_at(p + ivec2(1, 0));
    int bottom_left = luma_at(p + ivec2(-1, 1));
    int bottom = luma_at(p + ivec2(0, 1));
    int bottom_right = luma_at(p + ivec2(1, 1));
    int gx = top_right + 2 * right + bottom_right - top_left - 2 * left - bottom_left;
    int gy = bottom_left + 2 * bottom + bottom_right - top_left - 2 * top - top_right;
    int m = round_sqrt_255(gx * gx + gy * gy);
    o_pixel = uvec4(ivec4(m, m, m, source_pixel(p).a));
}
