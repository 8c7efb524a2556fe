#!/usr/bin/env bash
# Writer cost, one run, side by side:
#  1. whole processes (hyperfine): the batch_job example writing 10k series through a Handoff
#     vs Python prometheus_client building the same 10k series and calling write_to_textfile;
#  2. in process: Python's write_to_textfile alone (timed in Python, registry built beforehand)
#     vs promdrop_writer::write_registry alone (criterion, crates/writer/benches/write.rs);
#  3. the protocol's overhead: write_registry vs encode + one plain write + fsync (criterion).
# Python writes no `_created` series here (PROMETHEUS_DISABLE_CREATED_SERIES=True), so both
# sides write the same 10k series. Python does not fsync; promdrop fsyncs file and directory.
# Needs: hyperfine, python3 with prometheus_client (pip install -r tests/requirements.txt).
# Usage: bench/writer.sh [OUT_DIR]   (files go to a temporary directory under $TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in hyperfine python3; do
  command -v "$tool" >/dev/null || { echo "bench/writer.sh: $tool is missing" >&2; exit 2; }
done
python3 -c 'import prometheus_client' 2>/dev/null || { echo "bench/writer.sh: python3 prometheus_client is missing (pip install -r tests/requirements.txt)" >&2; exit 2; }

series=10000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${1:-$work}
mkdir -p "$out" "$work/rust" "$work/python"

cat >"$work/write_py.py" <<'PY'
"""The same 10k eviction series as `batch_job --series N`, written with write_to_textfile."""
import sys, time
from prometheus_client import CollectorRegistry, Counter, write_to_textfile

def build(n):
    registry = CollectorRegistry()
    evicted = Counter("descheduler_pods_evicted", "Number of evicted pods.",
                      ["result", "strategy", "namespace", "node"], registry=registry)
    for i in range(n):
        evicted.labels("success", "HighNodeUtilization", f"namespace-{i}", f"node-{i % 100}").inc(i % 7 + 1)
    return registry

mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
registry = build(n)
if mode == "once":
    write_to_textfile(path, registry)
else:  # "time": median of repeated write_to_textfile calls, in seconds
    times = []
    for _ in range(int(sys.argv[4])):
        start = time.perf_counter()
        write_to_textfile(path, registry)
        times.append(time.perf_counter() - start)
    times.sort()
    print(times[len(times) // 2])
PY

export PROMETHEUS_DISABLE_CREATED_SERIES=True
cargo build --release -q -p promdrop-writer --example batch_job
job=target/release/examples/batch_job

# Same series on both sides? (Count the eviction samples; Python names the counter
# descheduler_pods_evicted_total, and the example adds 4 evictions of its own.)
"$job" --dir "$work/rust" --job bench --series "$series" --flush-every 0 >/dev/null
python3 "$work/write_py.py" once "$work/python/bench.prom" "$series"
rust_n=$(grep -cE '^descheduler_pods_evicted(_total)?\{' "$work/rust/bench.prom" || true)
py_n=$(grep -cE '^descheduler_pods_evicted(_total)?\{' "$work/python/bench.prom" || true)
echo "series written: promdrop $rust_n (+ outcome metrics), python $py_n"
echo "bytes written:  promdrop $(wc -c <"$work/rust/bench.prom"), python $(wc -c <"$work/python/bench.prom")"

echo "== 1. whole processes (hyperfine)"
hyperfine -N --warmup 3 --min-runs 30 --export-json "$out/writer-process.json" \
  -n promdrop "$job --dir $work/rust --job bench --series $series --flush-every 0" \
  -n python "python3 $work/write_py.py once $work/python/bench.prom $series"

echo "== 2-3. in process (criterion, then Python's own timing)"
cargo bench -q -p promdrop-writer --bench write -- --noplot 2>&1 | tee "$out/criterion.txt" | grep -E 'time:|^write_10k|^interleaved' || true
py_write=$(python3 "$work/write_py.py" time "$work/python/bench.prom" "$series" 200)

python3 - "$out/writer-process.json" "$py_write" "$out/criterion.txt" <<'PY'
import json, re, sys
runs = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
def est(name):
    return json.load(open(f"target/criterion/write_10k_series/{name}/new/estimates.json"))["median"]["point_estimate"] / 1e9
rust, py = runs["promdrop"]["median"], runs["python"]["median"]
print(f"whole process, median:  promdrop {rust*1000:7.1f} ms   python {py*1000:7.1f} ms   python/promdrop {py/rust:5.2f}x")
wr, ewf, enc, flush = est("write_registry"), est("encode_write_fsync"), est("encode"), est("handoff_flush")
py_write = float(sys.argv[2])
print(f"in process, median:     write_registry {wr*1000:7.2f} ms   python write_to_textfile {py_write*1000:7.2f} ms   python/promdrop {py_write/wr:5.2f}x")
print(f"protocol overhead:      encode {enc*1000:.2f} ms, encode+write+fsync {ewf*1000:.2f} ms, write_registry {wr*1000:.2f} ms -> {wr/ewf:.3f}x (goal <= 1.2x; criterion runs them one after the other, see the interleaved line for a load-robust ratio)")
print(f"handoff snapshot:       {flush*1000:.2f} ms ({flush/ewf:.2f}x encode+write+fsync; adds labels, header, outcome, reads the previous file)")
# Machine-readable lines for bench/run-all.sh:
# RESULT|section|measurement|promdrop|peer|peer value|unit|peer/promdrop|goal
print(f"RESULT|writer|whole process, 10k series: batch_job vs Python write_to_textfile|{rust*1000:.1f}|Python write_to_textfile|{py*1000:.1f}|ms|{py/rust:.2f}|")
print(f"RESULT|writer|the write alone, 10k series: write_registry vs write_to_textfile|{wr*1000:.2f}|Python write_to_textfile|{py_write*1000:.2f}|ms|{py_write/wr:.2f}|")
interleaved = re.search(r"interleaved.*ratio ([0-9.]+)", open(sys.argv[3]).read())
if interleaved:
    print(f"RESULT|writer|write_registry / (encode + write + fsync), interleaved, 200 rounds|{float(interleaved.group(1)):.3f}|||ratio||<= 1.2")
print(f"RESULT|writer|write_registry / (encode + write + fsync), sequential criterion runs|{wr/ewf:.3f}|||ratio||<= 1.2")
PY
