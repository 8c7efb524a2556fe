#!/usr/bin/env bash
# Parse cost side by side, whole processes, one run: promdrop check, promtool check metrics and
# Python prometheus_client's parser on the same 7 MB file of 100k series.
# Needs: hyperfine, promtool (Debian package prometheus), python3 with prometheus_client.
# Usage: bench/parse.sh [RESULTS.json]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in hyperfine promtool python3; do
  command -v "$tool" >/dev/null || { echo "bench/parse.sh: $tool is missing" >&2; exit 2; }
done
python3 -c 'import prometheus_client' 2>/dev/null || { echo "bench/parse.sh: python3 prometheus_client is missing (pip install -r tests/requirements.txt)" >&2; exit 2; }

cargo build --release -q -p promdrop-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file="$work/100k.prom"
python3 bench/gen_exposition.py --single "$file" --families 1000 --series 100
echo "input: $(wc -c <"$file") bytes, $(grep -vc '^#' "$file") series"
results=${1:-$work/parse.json}
hyperfine --warmup 2 --min-runs 10 --export-json "$results" \
  -n promdrop "target/release/promdrop check --format classic $file" \
  -n promtool "promtool check metrics < $file" \
  -n python "python3 -c 'import sys; from prometheus_client.parser import text_string_to_metric_families as p; sum(1 for _ in p(open(sys.argv[1]).read()))' $file"
python3 - "$results" <<'PY'
import json, sys
runs = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = runs["promdrop"]["median"]
for name, r in runs.items():
    print(f"{name:10} median {r['median']*1000:8.1f} ms   {r['median']/base:6.1f}x promdrop")
# Machine-readable lines for bench/run-all.sh:
# RESULT|section|measurement|promdrop|peer|peer value|unit|peer/promdrop|goal
for peer, label in (("promtool", "promtool check metrics"), ("python", "Python prometheus_client parser")):
    r = runs[peer]["median"]
    print(f"RESULT|parse|whole process, 100k series (8.4 MB): promdrop check vs {label}|{base*1000:.1f}|{label}|{r*1000:.1f}|ms|{r/base:.1f}|")
PY
# Parse and render throughput in process (criterion).
cargo bench -q -p promdrop-textformat --bench parse_render -- --noplot 2>&1 | grep -E "^100k_series|thrpt:" | tee "$work/criterion.txt"
python3 - <<'PY'
import json
def mbps(name):
    est = json.load(open(f"target/criterion/100k_series/{name}/new/estimates.json"))["median"]["point_estimate"] / 1e9
    size = 8441779  # bytes of the generated input (bench/gen_exposition.py, 1000 x 100)
    return size / est / 1e6, est
for name, goal in (("parse_classic", ">= 250 MB/s"), ("render_classic", ">= 400 MB/s"), ("parse_openmetrics", ""), ("render_openmetrics", "")):
    rate, est = mbps(name)
    print(f"RESULT|parse|{name} throughput, 100k series (criterion)|{rate:.0f}|||MB/s||{goal}")
PY
