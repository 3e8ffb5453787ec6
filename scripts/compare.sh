#!/usr/bin/env bash
# wimpy beside its peers, in one run on one machine, on the same workloads:
#   - key-value: `wimpy bench` (3 local workers, straight to the owners and
#     through the master) against redis-benchmark on redis-server: 100-byte
#     values, 50 clients, 100,000 keys, SET then GET; then 1 MiB values, 8
#     clients, 256 keys. Neither side syncs each write (workers --sync
#     never; redis without RDB or AOF). Both load generators drive their
#     clients from one thread (redis-benchmark's default).
#   - compute: `wimpy bench compute` (the service: decode, operation, PNG
#     encode on the worker that holds the picture) against the `vips` command
#     on the same picture file (decode, operation, PNG encode in one process),
#     and sha256sum for the hash.
#   - security: the 100-byte and 1 MiB straight runs again with
#     `--insecure` (plain TCP) beside TLS, and the cost of opening a
#     connection (cargo bench -p wimpy-net --bench handshake).
# The table goes into docs/benchmarks.md between the compare markers.
#
#   scripts/compare.sh                 # 10 s per key-value run, 10 compute runs
#   RUN_SECONDS=30 RUNS=20 scripts/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${RUN_SECONDS:-10}"
runs="${RUNS:-10}"
redis_port=16379

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v vips >/dev/null || need+=(libvips-tools)
command -v python3 >/dev/null || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

cargo build --release --workspace --bins -q
wimpy=target/release/wimpy
out=$(mktemp -d)
cleanup() {
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT

# Redis runs twice, before and after wimpy's runs, and the table takes its
# better run: this machine's speed drifts over minutes, and the peer should
# not lose by it.
redis_kv() {
  redis-benchmark -p "$redis_port" -c 50 -d 100 -r 100000 -n $((secs * 100000)) -P 1 -t set,get --csv >"$out/$1"
  cat "$out/$1"
}
redis_1m() {
  redis-benchmark -p "$redis_port" -c 8 -d 1048576 -r 256 -n $((secs * 200)) -P 1 -t set,get --csv >"$out/$1"
  cat "$out/$1"
}
echo "== redis-server $(redis-server --version | grep -o 'v=[0-9.]*')"
redis-server --port "$redis_port" --save "" --appendonly no --daemonize yes >/dev/null
sleep 0.5
redis_kv redis-before.csv

kv=(--local 3 --sync never --threads 1 --records 100000 --value-size 100 --clients 50 --duration "${secs}s")
echo "== wimpy: SET-like and GET-like runs, straight to the owners"
"$wimpy" bench "${kv[@]}" --mix put=100 --json "$out/put.json"
"$wimpy" bench "${kv[@]}" --mix get=100 --json "$out/get.json"
echo "== wimpy: the same without TLS (--insecure), for TLS's cost"
"$wimpy" --insecure bench "${kv[@]}" --mix put=100 --json "$out/put-plain.json"
"$wimpy" --insecure bench "${kv[@]}" --mix get=100 --json "$out/get-plain.json"
echo "== wimpy: every client its own connections, one message per request (redis-benchmark's way)"
"$wimpy" bench "${kv[@]}" --connections per-client --no-batching --mix put=100 --json "$out/put-unbatched.json"
"$wimpy" bench "${kv[@]}" --connections per-client --no-batching --mix get=100 --json "$out/get-unbatched.json"
echo "== wimpy: the same through the master"
"$wimpy" --via-master bench "${kv[@]}" --mix put=100 --json "$out/put-master.json"
"$wimpy" --via-master bench "${kv[@]}" --mix get=100 --json "$out/get-master.json"
echo "== wimpy: YCSB A (no peer run; for the record)"
"$wimpy" bench "${kv[@]}" --workload a --json "$out/ycsb-a.json"
echo "== redis again"
redis_kv redis-after.csv

echo "== redis and wimpy: 1 MiB values"
redis_1m redis-1m-before.csv
big=(--local 3 --sync never --threads 1 --records 256 --value-size 1048576 --clients 8 --duration "${secs}s")
"$wimpy" bench "${big[@]}" --mix put=100 --json "$out/put-1m.json"
"$wimpy" bench "${big[@]}" --mix get=100 --json "$out/get-1m.json"
"$wimpy" --insecure bench "${big[@]}" --mix put=100 --json "$out/put-1m-plain.json"
"$wimpy" --insecure bench "${big[@]}" --mix get=100 --json "$out/get-1m-plain.json"
"$wimpy" --via-master bench "${big[@]}" --mix put=100 --json "$out/put-1m-master.json"
"$wimpy" --via-master bench "${big[@]}" --mix get=100 --json "$out/get-1m-master.json"
redis_1m redis-1m-after.csv
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true

echo "== compute: wimpy bench compute and vips on one 1920x1080 picture"
ops=(--op grayscale --op blur:2 --op sobel --op resize:960:540:lanczos3 --op sha256)
"$wimpy" bench compute --local 1 --backends cpu,simd,gles,wgpu "${ops[@]}" --runs "$runs" \
  --picture-size 1920x1080 --save-picture "$out/picture.png" --json "$out/compute.json"

echo "== opening a connection: TLS handshake beside plain TCP"
cargo bench -q -p wimpy-net --bench handshake -- --json "$out/handshake.json"

python3 scripts/peers/compare.py "$out" "$runs" docs/benchmarks.md
echo "docs/benchmarks.md updated"
