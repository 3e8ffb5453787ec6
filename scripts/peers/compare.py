"""Times the vips and sha256sum peers on the picture wimpy used, reads the
figures of one scripts/compare.sh run, and writes the side-by-side table into
docs/benchmarks.md between <!-- compare:begin --> and <!-- compare:end -->.

    python3 compare.py OUT_DIR RUNS docs/benchmarks.md
"""

import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

out, runs, doc = sys.argv[1], int(sys.argv[2]), sys.argv[3]
picture = os.path.join(out, "picture.png")
result = os.path.join(out, "peer.png")


def load(name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def median_ms(argv):
    """Median wall time of `runs` runs of a command, after one warm-up."""
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


# The same operation in each: decode the PNG, run it, encode a PNG.
peers = {
    "grayscale": ["vips", "colourspace", picture, result, "b-w"],
    "blur:2": ["vips", "gaussblur", picture, result, "2"],
    "sobel": ["vips", "sobel", picture, result],
    "resize:960:540:lanczos3": ["vips", "resize", picture, result, "0.5", "--kernel", "lanczos3"],
    "sha256": ["sha256sum", picture],
}
peer_ms = {op: median_ms(argv) for op, argv in peers.items()}
vips_version = subprocess.run(["vips", "--version"], capture_output=True, text=True).stdout.strip()

def redis_csv(name):
    """redis-benchmark --csv rows by test name; lines before the header
    (warnings some versions print) are skipped."""
    with open(os.path.join(out, name)) as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"test"')), None)
    if start is None:
        sys.exit(f"{name}: no CSV header from redis-benchmark")
    rows = {row["test"]: row for row in csv.DictReader(lines[start:])}
    for row in rows.values():
        missing = {"rps", "p50_latency_ms", "p99_latency_ms"} - set(row)
        if missing:
            sys.exit(f"{name}: redis-benchmark gave no {', '.join(sorted(missing))}; version 7 or later is needed")
    return rows


def best_of(*names):
    """Per test, the row of the run with the most requests per second."""
    runs = [redis_csv(n) for n in names]
    return {test: max((r[test] for r in runs), key=lambda row: float(row["rps"])) for test in runs[0]}


redis = best_of("redis-before.csv", "redis-after.csv")
redis_1m = best_of("redis-1m-before.csv", "redis-1m-after.csv")


def kv_row(label, name, r, mb=0):
    """One row: ops/s (or MB/s for values of `mb` MiB) and latencies."""
    run = load(name)["runs"][0]
    op = next(iter(run["operations"].values()))
    if not op["ops"]:
        sys.exit(f"{name}: no operation succeeded")
    ops, rops = run["ops_per_s"], float(r["rps"])
    if mb:
        rate, rrate = f"{ops * mb * 1.048576:,.0f} MB/s", f"{rops * mb * 1.048576:,.0f} MB/s"
    else:
        rate, rrate = f"{ops:,.0f}", f"{rops:,.0f}"
    return (
        f"| {label} | {rate} | {op['latency_us']['p50'] / 1e3:.2f} | {op['latency_us']['p99'] / 1e3:.2f} "
        f"| {rrate} | {float(r['p50_latency_ms']):.2f} | {float(r['p99_latency_ms']):.2f} | {ops / rops:.2f}x |"
    )


lines = [
    "<!-- compare:begin -->",
    f"Measured {datetime.date.today()} by scripts/compare.sh on {platform.machine()}, "
    f"{os.cpu_count()} cores; one run, one machine.",
    "",
    "Key-value: 3 local workers (`--sync never`) and the load generator on the same machine, 100-byte "
    "values, 50 clients, 100,000 keys; redis-server without persistence, redis-benchmark -c 50 -d 100 "
    "-r 100000 -P 1, run before and after wimpy's runs, its better run shown. Each load generator drives its clients from one thread, as redis-benchmark does "
    "by default. wimpy's clients share one SDK client, as an application's tasks "
    "do, and the SDK sends the requests they have in flight to one worker together (`Worker.batch`, "
    "each request answered on its own); redis-benchmark sends one request per connection at a time. "
    "The rows marked *unbatched* give every wimpy client its own connections and one message per "
    "request, redis-benchmark's way.",
    "",
    "| run | wimpy ops/s | p50 ms | p99 ms | Redis ops/s | p50 ms | p99 ms | wimpy / Redis |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
    kv_row("PUT, straight to the owner", "put.json", redis["SET"]),
    kv_row("GET, straight to the owner", "get.json", redis["GET"]),
    kv_row("PUT, straight, *unbatched*", "put-unbatched.json", redis["SET"]),
    kv_row("GET, straight, *unbatched*", "get-unbatched.json", redis["GET"]),
    kv_row("PUT, through the master", "put-master.json", redis["SET"]),
    kv_row("GET, through the master", "get-master.json", redis["GET"]),
    kv_row("PUT 1 MiB, 8 clients, straight", "put-1m.json", redis_1m["SET"], mb=1),
    kv_row("GET 1 MiB, 8 clients, straight", "get-1m.json", redis_1m["GET"], mb=1),
    kv_row("PUT 1 MiB, 8 clients, through the master", "put-1m-master.json", redis_1m["SET"], mb=1),
    kv_row("GET 1 MiB, 8 clients, through the master", "get-1m-master.json", redis_1m["GET"], mb=1),
]
def per_batch(name):
    return load(name)["runs"][0]["batches"]["requests_per_batch"] or 0


def rate(name, mb=0):
    ops = load(name)["runs"][0]["ops_per_s"]
    return f"{ops * mb * 1.048576:,.0f} MB/s" if mb else f"{ops:,.0f}"


def tls_row(label, tls, plain, mb=0):
    ratio = load(tls)["runs"][0]["ops_per_s"] / load(plain)["runs"][0]["ops_per_s"]
    return f"| {label} | {rate(tls, mb)} | {rate(plain, mb)} | {ratio:.2f}x |"


handshake = load("handshake.json")
tls_lines = [
    "",
    "TLS beside `--insecure` (plain TCP), the same runs straight to the owners; every wimpy row above is TLS.",
    "",
    "| run | TLS | --insecure | TLS / plain |",
    "|---|---:|---:|---:|",
    tls_row("PUT 100 B, batched", "put.json", "put-plain.json"),
    tls_row("GET 100 B, batched", "get.json", "get-plain.json"),
    tls_row("PUT 1 MiB, 8 clients", "put-1m.json", "put-1m-plain.json", mb=1),
    tls_row("GET 1 MiB, 8 clients", "get-1m.json", "get-1m-plain.json", mb=1),
    "",
    f"Opening a connection and having one call answered (median of {handshake['openings']}, "
    f"no session resumed): {handshake['tls_ms']:.2f} ms with TLS, {handshake['plain_ms']:.2f} ms plain "
    f"({handshake['tls_ms'] / handshake['plain_ms']:.1f}x).",
]

a = load("ycsb-a.json")["runs"][0]
lines += [
    "",
    f"Requests per batch: {per_batch('put.json'):.1f} (PUT) and {per_batch('get.json'):.1f} (GET) "
    f"straight to the owners, {per_batch('put-master.json'):.1f} and {per_batch('get-master.json'):.1f} "
    "from the clients to the master.",
    *tls_lines,
    "",
    f"YCSB A (50% read, 50% update, zipfian) on the same cluster: {a['ops_per_s']:,.0f} ops/s, "
    f"p99 {a['latency_us']['p99'] / 1e3:.2f} ms (Redis has no YCSB run here).",
    "",
]

compute = load("compute.json")
pic = compute["picture"]
lines += [
    f"Compute on one {pic['width']}x{pic['height']} picture, median of {runs} runs: wimpy end to end "
    "(request, decode, operation, PNG encode on the worker, answer) beside the `vips` command "
    f"({vips_version}; process start, decode, operation, PNG encode) and sha256sum on the same file. "
    "gles and wgpu ran on Mesa's software drivers (llvmpipe, lavapipe): correct, not GPU speeds.",
    "",
]
backends = []
for c in compute["cells"]:
    if c["backend"] not in backends:
        backends.append(c["backend"])
lines.append("| op | " + " | ".join(f"wimpy {b} ms" for b in backends) + " | peer ms | best wimpy / peer |")
lines.append("|---|" + "---:|" * (len(backends) + 2))
for op, ms in peer_ms.items():
    cells = {c["backend"]: c for c in compute["cells"] if c["op"] == op}
    cols, best = [], None
    for b in backends:
        c = cells.get(b)
        if c and c["ok"]:
            t = c["latency_us"]["p50"] / 1e3
            best = t if best is None else min(best, t)
            cols.append(f"{t:.1f}")
        else:
            cols.append("n/a")
    speed = f"{ms / best:.2f}x faster" if best and best <= ms else (f"{best / ms:.2f}x slower" if best else "n/a")
    peer = "sha256sum" if op == "sha256" else "vips"
    lines.append(f"| {op} | " + " | ".join(cols) + f" | {ms:.1f} ({peer}) | {speed} |")
lines.append("<!-- compare:end -->")
block = "\n".join(lines)

with open(doc) as f:
    text = f.read()
begin, end = "<!-- compare:begin -->", "<!-- compare:end -->"
if begin in text and end in text:
    text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
else:
    text = text.rstrip("\n") + "\n\n## Side by side: scripts/compare.sh\n\n" + block + "\n"
with open(doc, "w") as f:
    f.write(text)
print(block)
