#!/usr/bin/env bash
# Scrape cost: promdrop-exporter vs node_exporter's textfile collector vs the Pushgateway, on
# the same data, side by side in one run; then promdrop alone on 10k files.
#
#   1,000 files of 100 series (bench/gen_exposition.py --families 1000 --series 100, 8.4 MB):
#     - promdrop-exporter --textfile.directory=DIR (events on, the default)
#     - prometheus-node-exporter --collector.disable-defaults --collector.textfile
#       --collector.textfile.directory=DIR
#     - prometheus-pushgateway, each file pushed as its own group (PUT /metrics/job/<stem>)
#   each scraped SCRAPES times (default 30) with curl in three ways: gzip received as sent
#   (-H 'Accept-Encoding: gzip', the server's cost), gzip decoded by curl (--compressed, what
#   a scraper pays in all), and plain; medians,
#   resident memory (VmRSS) after the warm-up scrapes, and the rename latency of promdrop
#   (examples/rename_latency.rs: RENAMES renames, default 200, polled with gzip and
#   Prometheus's Accept header, p50/p99).
#   10,000 files of 100 series (84 MB): promdrop alone, median scrape.
#
# Usage: bench/scrape.sh            (a few minutes; run it on a quiet machine)
#   SCRAPES=30 RENAMES=200 SKIP_10K=1 bench/scrape.sh
# Prints a table, then RESULT| lines for bench/report.py (bench/run-all.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "bench/scrape.sh: $*" >&2
  exit 2
}
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 not found: $2"; }
need cargo "install Rust (https://rustup.rs)"
need curl "apt-get install curl"
need python3 "apt-get install python3"
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
PUSHGATEWAY=${PUSHGATEWAY:-/usr/bin/prometheus-pushgateway}
[ -x "$NODE_EXPORTER" ] || fail "$NODE_EXPORTER not found: apt-get install prometheus-node-exporter (or set NODE_EXPORTER)"
[ -x "$PUSHGATEWAY" ] || fail "$PUSHGATEWAY not found: apt-get install prometheus-pushgateway (or set PUSHGATEWAY)"
SCRAPES=${SCRAPES:-30}
RENAMES=${RENAMES:-200}

work=$(mktemp -d /tmp/promdrop-scrape.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "building promdrop-exporter (release)..."
cargo build --release -q -p promdrop-exporter --bin promdrop-exporter --example rename_latency
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
EXPORTER="$target_dir/release/promdrop-exporter"
RENAME_LATENCY="$target_dir/release/examples/rename_latency"
[ -x "$EXPORTER" ] || fail "$EXPORTER was not built"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ok URL: until it answers 200 (60 s at most).
wait_ok() {
  for _ in $(seq 600); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  fail "$1 did not answer"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# scrape_median URL MODE: median of SCRAPES curl time_total (seconds); MODE gzip (received
# compressed), decoded (gzip, decoded by curl) or plain.
scrape_median() {
  local url=$1 mode=$2 flags=()
  [ "$mode" = gzip ] && flags=(-H 'Accept-Encoding: gzip')
  [ "$mode" = decoded ] && flags=(--compressed)
  for _ in 1 2 3; do curl -sf -o /dev/null "${flags[@]}" "$url"; done
  for _ in $(seq "$SCRAPES"); do
    curl -sf -o /dev/null "${flags[@]}" -w '%{time_total}\n' "$url"
  done | python3 -c 'import statistics,sys; print(statistics.median(float(l) for l in sys.stdin))'
}

body_bytes() { curl -sf "$@" | wc -c; }

echo "generating 1,000 files of 100 series..."
python3 bench/gen_exposition.py --dir "$work/1k" --families 1000 --series 100
du -sb "$work/1k" | awk '{printf "  %.1f MB on disk\n", $1/1e6}'

p_port=$(free_port)
n_port=$(free_port)
g_port=$(free_port)
"$EXPORTER" --textfile.directory="$work/1k" --web.listen-address="127.0.0.1:$p_port" --log.level=warn &
pids+=($!)
p_pid=$!
"$NODE_EXPORTER" --collector.disable-defaults --collector.textfile \
  --collector.textfile.directory="$work/1k" --web.listen-address="127.0.0.1:$n_port" \
  >"$work/node_exporter.log" 2>&1 &
pids+=($!)
n_pid=$!
"$PUSHGATEWAY" --web.listen-address="127.0.0.1:$g_port" \
  >"$work/pushgateway.log" 2>&1 &
pids+=($!)
g_pid=$!
wait_ok "http://127.0.0.1:$p_port/-/ready"
wait_ok "http://127.0.0.1:$n_port/metrics"
wait_ok "http://127.0.0.1:$g_port/-/ready"
P_URL="http://127.0.0.1:$p_port/metrics"
N_URL="http://127.0.0.1:$n_port/metrics"
G_URL="http://127.0.0.1:$g_port/metrics"

echo "pushing 1,000 groups to the Pushgateway (4 at a time)..."
push_start=$(date +%s.%N)
find "$work/1k" -name '*.prom' -print0 | xargs -0 -P 4 -I{} sh -c \
  'f="$1"; stem=$(basename "$f" .prom); curl -sf -X PUT --data-binary @"$f" "$2/metrics/job/$stem" || { echo "push of $f failed" >&2; exit 255; }' _ {} "http://127.0.0.1:$g_port"
push_end=$(date +%s.%N)
push_seconds=$(python3 -c "print(f'{$push_end - $push_start:.1f}')")
echo "  pushed in ${push_seconds} s"

series() { curl -sf "$1" | grep -c '^batch_job_' || true; }
for name in promdrop node_exporter pushgateway; do
  case $name in promdrop) u=$P_URL ;; node_exporter) u=$N_URL ;; pushgateway) u=$G_URL ;; esac
  s=$(series "$u")
  [ "$s" -eq 100000 ] || fail "$name serves $s batch_job_ series, expected 100000"
done
echo "  each serves the 100,000 series"

declare -A med
for name in promdrop node_exporter pushgateway; do
  case $name in promdrop) u=$P_URL ;; node_exporter) u=$N_URL ;; pushgateway) u=$G_URL ;; esac
  echo "scraping $name ($SCRAPES x gzip, $SCRAPES x gzip decoded, $SCRAPES x plain)..."
  med[$name,gzip]=$(scrape_median "$u" gzip)
  med[$name,decoded]=$(scrape_median "$u" decoded)
  med[$name,plain]=$(scrape_median "$u" plain)
done
declare -A rss
rss[promdrop]=$(rss_kb "$p_pid")
rss[node_exporter]=$(rss_kb "$n_pid")
rss[pushgateway]=$(rss_kb "$g_pid")
gz_bytes=$(body_bytes -H 'Accept-Encoding: gzip' "$P_URL")
plain_bytes=$(body_bytes "$P_URL")

echo "rename latency: $RENAMES renames, polled with gzip (Prometheus's Accept: OpenMetrics)..."
rename_json=$("$RENAME_LATENCY" --url "$P_URL" --dir "$work/1k" --renames "$RENAMES" --json)
echo "  $rename_json"
echo "rename latency: $RENAMES renames, polled with gzip (classic text format)..."
rename_classic_json=$("$RENAME_LATENCY" --url "$P_URL" --dir "$work/1k" --renames "$RENAMES" --classic --json)
echo "  $rename_classic_json"
rss[promdrop_after]=$(rss_kb "$p_pid")

for pid in "$n_pid" "$g_pid"; do kill "$pid" 2>/dev/null || true; done

ten_k=""
if [ "${SKIP_10K:-0}" != 1 ]; then
  echo "generating 10,000 files of 100 series..."
  python3 bench/gen_exposition.py --dir "$work/10k" --families 10000 --series 100
  t_port=$(free_port)
  t_start=$(date +%s.%N)
  # 1M series (84 MB) is past the DaemonSet-sized default caps (--max-total-bytes=80MiB):
  # raised here, as an operator serving that much would with a larger memory limit.
  "$EXPORTER" --textfile.directory="$work/10k" --web.listen-address="127.0.0.1:$t_port" --log.level=warn \
    --max-total-bytes=1GiB --max-total-series=10000000 &
  pids+=($!)
  t_pid=$!
  wait_ok "http://127.0.0.1:$t_port/-/ready"
  t_ready=$(python3 -c "print(f'{$(date +%s.%N) - $t_start:.1f}')")
  T_URL="http://127.0.0.1:$t_port/metrics"
  s=$(series "$T_URL")
  [ "$s" -eq 1000000 ] || fail "promdrop serves $s series of 10k files, expected 1000000"
  sleep 2 # let the gzip body of the first publication be prepared
  echo "scraping promdrop on 10k files..."
  t_gzip=$(scrape_median "$T_URL" gzip)
  t_plain=$(scrape_median "$T_URL" plain)
  t_rss=$(rss_kb "$t_pid")
  ten_k="$t_gzip $t_plain $t_rss $t_ready"
  kill "$t_pid" 2>/dev/null || true
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$rename_json" "$rename_classic_json" "$ten_k" <<EOF
import json, sys
med = {
    ("promdrop", "gzip"): ${med[promdrop,gzip]}, ("promdrop", "plain"): ${med[promdrop,plain]},
    ("node_exporter", "gzip"): ${med[node_exporter,gzip]}, ("node_exporter", "plain"): ${med[node_exporter,plain]},
    ("pushgateway", "gzip"): ${med[pushgateway,gzip]}, ("pushgateway", "plain"): ${med[pushgateway,plain]},
    ("promdrop", "decoded"): ${med[promdrop,decoded]}, ("node_exporter", "decoded"): ${med[node_exporter,decoded]},
    ("pushgateway", "decoded"): ${med[pushgateway,decoded]},
}
modes = (("gzip", "gzip"), ("decoded", "gzip decoded"), ("plain", "plain"))
rss = {"promdrop": ${rss[promdrop]}, "node_exporter": ${rss[node_exporter]}, "pushgateway": ${rss[pushgateway]}}
rss_after = ${rss[promdrop_after]}
om, classic = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ms = lambda s: f"{s * 1000:.2f}"
print()
print("1,000 files x 100 series, $plain_bytes bytes plain, $gz_bytes gzip (promdrop); medians of $SCRAPES curl scrapes")
print(f"{'':28}{'promdrop':>12}{'node_exporter':>15}{'pushgateway':>13}{'node/promdrop':>15}{'pgw/promdrop':>14}")
for mode, label in modes:
    p, n, g = (med[(x, mode)] for x in ("promdrop", "node_exporter", "pushgateway"))
    print(f"{'scrape, ' + label + ' (ms)':28}{ms(p):>12}{ms(n):>15}{ms(g):>13}{n / p:>14.1f}x{g / p:>13.1f}x")
print(f"{'RSS after warm-up (MB)':28}{rss['promdrop'] / 1024:>12.1f}{rss['node_exporter'] / 1024:>15.1f}{rss['pushgateway'] / 1024:>13.1f}{rss['node_exporter'] / rss['promdrop']:>14.2f}x{rss['pushgateway'] / rss['promdrop']:>13.2f}x")
print(f"promdrop RSS after {2 * $RENAMES} renames: {rss_after / 1024:.1f} MB")
print(f"Pushgateway: 1,000 pushes took ${push_seconds} s (4 at a time)")
print(f"rename visible (gzip, OpenMetrics as Prometheus asks): p50 {om['sent_p50_ms']} ms, p99 {om['sent_p99_ms']} ms (poll sent); received+decoded p50 {om['seen_p50_ms']} ms, p99 {om['seen_p99_ms']} ms")
print(f"rename visible (gzip, classic): p50 {classic['sent_p50_ms']} ms, p99 {classic['sent_p99_ms']} ms (poll sent); received+decoded p50 {classic['seen_p50_ms']} ms, p99 {classic['seen_p99_ms']} ms")
ten = sys.argv[3].split()
if ten:
    print(f"10,000 files x 100 series: scrape gzip {ms(float(ten[0]))} ms, plain {ms(float(ten[1]))} ms, RSS {int(ten[2]) / 1024:.1f} MB, ready after {ten[3]} s")
# RESULT|section|measurement|promdrop|peer|peer value|unit|peer/promdrop|goal
for mode, mode_label in modes:
    p = med[("promdrop", mode)]
    for peer, label, goal in (("node_exporter", "node_exporter", ">= 50"), ("pushgateway", "Pushgateway", ">= 10")):
        v = med[(peer, mode)]
        print(f"RESULT|scrape|median scrape, 1k files x 100 series, {mode_label}|{ms(p)}|{label}|{ms(v)}|ms|{v / p:.1f}|{goal}")
print(f"RESULT|scrape|resident memory after warm-up, 1k x 100|{rss['promdrop'] / 1024:.1f}|node_exporter|{rss['node_exporter'] / 1024:.1f}|MB|{rss['node_exporter'] / rss['promdrop']:.2f}|>= 3")
print(f"RESULT|scrape|resident memory after {2 * $RENAMES} renames, 1k x 100|{rss_after / 1024:.1f}|node_exporter|{rss['node_exporter'] / 1024:.1f}|MB|{rss['node_exporter'] / rss_after:.2f}|>= 3")
print(f"RESULT|scrape|rename visible, p99 of $RENAMES (gzip, OpenMetrics)|{om['sent_p99_ms']}|||ms||<= 100")
print(f"RESULT|scrape|rename visible, p50 of $RENAMES (gzip, OpenMetrics)|{om['sent_p50_ms']}|||ms||")
print(f"RESULT|scrape|rename visible, p99 of $RENAMES (gzip, classic)|{classic['sent_p99_ms']}|||ms||<= 100")
if ten:
    print(f"RESULT|scrape|median scrape, 10k files x 100 series, gzip|{ms(float(ten[0]))}|||ms||< 100")
    print(f"RESULT|scrape|median scrape, 10k files x 100 series, plain|{ms(float(ten[1]))}|||ms||< 100")
EOF
