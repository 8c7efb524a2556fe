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
PY
