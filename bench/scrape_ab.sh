#!/usr/bin/env bash
# A/B of promdrop-exporter binaries on the same files, one binary after the other, in rounds:
# what bench/scrape.sh measures of promdrop alone (median of 30 curl scrapes: gzip as sent,
# gzip decoded by curl, plain; resident memory after them; the gzip body's size), on
# 1,000 and 10,000 files of 100 series (bench/gen_exposition.py, one family per file).
# For comparing a change with the commit before it, where bench/scrape.sh's figures alone
# would mix the change with the machine's load and peers:
#
#   git worktree add /tmp/old <commit> && cargo build --release --manifest-path /tmp/old/Cargo.toml \
#     -p promdrop-exporter --target-dir /tmp/old-target
#   bench/scrape_ab.sh /tmp/old-target/release/promdrop-exporter target/release/promdrop-exporter
#
# Usage: bench/scrape_ab.sh BIN [BIN...]      ROUNDS=2 SCRAPES=30 FILES="1000 10000"
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/scrape_ab.sh BIN [BIN...]" >&2; exit 2; }
for bin in "$@"; do
  [ -x "$bin" ] || { echo "bench/scrape_ab.sh: $bin is not an executable" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "bench/scrape_ab.sh: curl not found: apt-get install curl" >&2; exit 2; }
ROUNDS=${ROUNDS:-2}
SCRAPES=${SCRAPES:-30}
FILES=${FILES:-"1000 10000"}
work=$(mktemp -d /tmp/promdrop-scrape-ab.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() {
  local url=$1
  shift
  for _ in 1 2 3; do curl -sf -o /dev/null "$@" "$url"; done
  for _ in $(seq "$SCRAPES"); do curl -sf -o /dev/null "$@" -w '%{time_total}\n' "$url"; done |
    python3 -c 'import statistics,sys; print(f"{statistics.median(float(l) for l in sys.stdin)*1000:.2f}")'
}

for files in $FILES; do
  python3 bench/gen_exposition.py --dir "$work/$files" --families "$files" --series 100 >/dev/null
done
printf '%-6s %-5s %-50s %9s %9s %9s %9s %12s\n' files round binary "gzip ms" "decoded" "plain ms" "RSS MB" "gzip bytes"
for files in $FILES; do
  for round in $(seq "$ROUNDS"); do
    for bin in "$@"; do
      port=$(free_port)
      caps=()
      # Binaries before the directory caps have no such flags; later ones need them raised.
      "$bin" --help | grep -q max-total-bytes && caps=(--max-total-bytes=1GiB --max-total-series=10000000)
      "$bin" --textfile.directory="$work/$files" --web.listen-address="127.0.0.1:$port" --log.level=warn "${caps[@]}" &
      pid=$!
      until curl -sf -o /dev/null "http://127.0.0.1:$port/-/ready"; do sleep 0.2; done
      url="http://127.0.0.1:$port/metrics"
      # Every file served before measuring.
      until [ "$(curl -sf "$url" | grep -c '^# TYPE batch_job_')" -ge "$files" ]; do sleep 0.2; done
      gzip=$(median "$url" -H 'Accept-Encoding: gzip')
      decoded=$(median "$url" --compressed)
      plain=$(median "$url")
      rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
      bytes=$(curl -sf -H 'Accept-Encoding: gzip' "$url" | wc -c)
      printf '%-6s %-5s %-50s %9s %9s %9s %9s %12s\n' "$files" "$round" "$bin" "$gzip" "$decoded" "$plain" "$rss" "$bytes"
      kill "$pid"
      wait "$pid" 2>/dev/null || true
      pid=
    done
  done
done
