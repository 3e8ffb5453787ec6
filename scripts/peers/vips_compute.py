"""libvips (through pyvips, in-process) on the compute benchmark's image.

Reads the raw RGBA image the compute benchmark wrote, runs libvips'
nearest equivalent of each wimpy operation, forcing evaluation into memory,
and prints megapixels per second (best of N). Run once with
VIPS_CONCURRENCY=1 and once with the default thread count.
"""
import sys
import time

import pyvips

path, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
pyvips.cache_set_max(0)  # every run computes, none is answered from the cache

with open(path, "rb") as f:
    raw = f.read()  # new_from_memory borrows these bytes: keep them alive
img = pyvips.Image.new_from_memory(raw, width, height, 4, "uchar").copy(interpretation="srgb").copy_memory()
rgb, alpha = img[0:3], img[3]


def box(radius):
    n = 2 * radius + 1
    return pyvips.Image.new_from_array([[1] * n], scale=n)


def gauss5():
    row = [1, 4, 6, 4, 1]
    return pyvips.Image.new_from_array([[a * b for b in row] for a in row], scale=256)


OPS = [
    ("grayscale", lambda: img.colourspace("b-w")),
    ("invert", lambda: rgb.invert().bandjoin(alpha)),
    ("brightness/contrast", lambda: rgb.linear([1.3] * 3, [20 - 128 * 0.3] * 3).cast("uchar").bandjoin(alpha)),
    ("threshold", lambda: (img.colourspace("b-w")[0] >= 128).ifthenelse(255, 0)),
    ("gaussian blur σ2", lambda: img.gaussblur(2)),
    ("box blur r3", lambda: img.convsep(box(3), precision="integer")),
    ("sharpen σ1", lambda: img.sharpen(sigma=1)),
    ("sobel", lambda: img.colourspace("b-w")[0].sobel()),
    ("conv 3x3", lambda: img.conv(pyvips.Image.new_from_array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]), precision="integer")),
    ("conv 5x5", lambda: img.conv(gauss5(), precision="integer")),
    ("resize bilinear ½", lambda: img.resize(0.5, kernel="linear")),
    ("resize Lanczos3 ½", lambda: img.resize(0.5, kernel="lanczos3")),
    ("crop ½", lambda: img.crop(960, 540, 1920, 1080)),
    ("flip h", lambda: img.fliphor()),
    ("rotate 90", lambda: img.rot90()),
]

mp = width * height / 1e6
for name, op in OPS:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        op().write_to_memory()
        best = min(best, time.perf_counter() - start)
    print(f"{name}\t{mp / best:.0f}")
