#!/usr/bin/env bash
# The exporter under churn (bench/churn.py does the measuring): files sharing family names,
# rewritten by atomic rename while scrapers ask every 15 s with gzip, as Prometheus does.
#   A. 1,000 files x 100 series, 10 changes/s, promdrop-exporter and node_exporter's textfile
#      collector side by side on the same directory: CPU of each over the same window.
#   B. 5,000 and C. 10,000 files x 100 series, 10 changes/s: promdrop's CPU per change as the
#      directory grows (it must stay flat), rename-visible latency, resident memory beside the
#      plain body (C: 1M series).
#   D. 1,000 files, 100 changes/s for 60 s: no growing backlog, latency, consistent scrapes.
# Every full scrape is checked (each file once, one generation per file, never going back).
# Usage: bench/churn.sh     (about 8 minutes; DURATION=45 LATENCY=30 SUSTAIN=60 SKIP_10K=1 to change)
# Prints each scenario's summary, then RESULT| lines for bench/report.py (bench/run-all.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() {
  echo "bench/churn.sh: $*" >&2
  exit 2
}
command -v cargo >/dev/null || fail "cargo not found: install Rust (https://rustup.rs)"
command -v python3 >/dev/null || fail "python3 not found: apt-get install python3"
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
[ -x "$NODE_EXPORTER" ] || fail "$NODE_EXPORTER not found: apt-get install prometheus-node-exporter (or set NODE_EXPORTER)"
DURATION=${DURATION:-45}
SUSTAIN=${SUSTAIN:-60}
LATENCY=${LATENCY:-30}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "building promdrop-exporter (release)..."
cargo build --release -q -p promdrop-exporter --bin promdrop-exporter
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
EXPORTER="$target_dir/release/promdrop-exporter"
[ -x "$EXPORTER" ] || fail "$EXPORTER was not built"

out=$(mktemp -d /tmp/promdrop-churn-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
status=0
run() {
  local name=$1
  shift
  echo "== $name"
  python3 bench/churn.py --exporter "$EXPORTER" "$@" | tee "$out/$name.log" || status=1
}
# A-C: CPU over DURATION s of churn and scrapes, then rename-visible latency over LATENCY s
# (the prober's hundreds of requests a second are no user's load: not in the CPU figure).
run A --files 1000 --rate 10 --duration "$DURATION" --latency-window "$LATENCY" --node-exporter "$NODE_EXPORTER"
run B --files 5000 --rate 10 --duration "$DURATION" --latency-window "$LATENCY"
if [ "${SKIP_10K:-0}" != 1 ]; then
  # 1M series: past the default caps on some machines' byte counts; raised as an operator would.
  run C --files 10000 --rate 10 --duration "$DURATION" --latency-window "$LATENCY" \
    --exporter-arg=--max-total-bytes=1GiB --exporter-arg=--max-total-series=10000000
fi
run D --files 1000 --rate 100 --duration "$SUSTAIN"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
res = {}
for name in "ABCD":
    path = os.path.join(out, f"{name}.log")
    if os.path.exists(path):
        for line in open(path):
            if line.startswith("JSON "):
                res[name] = json.loads(line[5:])
def row(*cells):
    print("RESULT|churn|" + "|".join(str(c) for c in cells))
a = res["A"]
p, n = a["cpu_core_pct"]["promdrop"], a["cpu_core_pct"]["node_exporter"]
row("CPU, 1k files x 100 series sharing family names, 10 changes/s, gzip scrapes every 15 s", p, "node_exporter", n,
    "% of a core", f"{n / p:.1f}" if p else "inf", "promdrop <= 1/5 of node_exporter")
for name in "ABC":
    if name in res:
        r = res[name]
        row(f"CPU per change, {r['files']} files, 10 changes/s", r["cpu_ms_per_change"]["promdrop"], "", "", "ms", "",
            "flat as files grow")
if "C" in res:
    c = res["C"]
    row("CPU, 10k files x 100 series, 10 changes/s", c["cpu_core_pct"]["promdrop"], "", "", "% of a core", "", "< 10")
    row("rename visible p99, 10k files, 10 changes/s", c["visible_p99_ms"], "", "", "ms", "", "<= 100")
    row("resident memory / plain body, 1M series", c["rss_over_body"], "", "", "x", "", "<= 1.5")
d = res["D"]
row("rename visible p99, 1k files, 100 changes/s for 60 s", d["visible_p99_ms"], "", "", "ms", "", "<= 250")
row("rename visible p50, first third vs last third, 100 changes/s",
    f"{d['visible_p50_first_third_ms']} / {d['visible_p50_last_third_ms']}", "", "", "ms", "", "no growth")
row("inconsistent or failed scrapes, 100 changes/s", d["error_count"], "", "", "", "", "0")
PY
exit $status
