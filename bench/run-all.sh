#!/usr/bin/env bash
# Runs every peer comparison in one go and rewrites the generated part of docs/BENCHMARKS.md:
# a table of medians and ratios, the machine, the date and the load.
#   bench/parse.sh   parse cost: promdrop vs promtool and Python (and criterion throughput)
#   bench/writer.sh  writer cost: promdrop-writer vs Python's write_to_textfile
#   bench/scrape.sh  scrape cost: promdrop-exporter vs node_exporter and the Pushgateway
#   bench/churn.sh   the exporter under churn: CPU vs node_exporter, CPU per change, latency
# Usage: bench/run-all.sh            (takes several minutes; run it on a quiet machine)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for script in parse writer scrape churn; do
  if [ ! -x "bench/$script.sh" ]; then
    echo "bench/run-all.sh: bench/$script.sh is missing" >&2
    exit 2
  fi
  echo "== bench/$script.sh"
  "bench/$script.sh" 2>&1 | tee "$out/$script.log"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$out"/*.log | grep '^RESULT|' >"$out/results.txt" || true
python3 bench/report.py "$out/results.txt" "$load_before" "$load_after" docs/BENCHMARKS.md
echo "docs/BENCHMARKS.md rewritten ($(wc -l <"$out/results.txt") results)"
