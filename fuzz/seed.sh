#!/usr/bin/env bash
# Builds the initial (unminimised) seed corpora under fuzz/corpus/ from the OpenMetrics
# conformance cases and the hand-written classic inputs in fuzz/seeds/classic/.
# Run `cargo fuzz cmin` on each target afterwards (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
conformance=../crates/textformat/tests/conformance/openmetrics/parsers
for target in parse_classic parse_openmetrics parse_auto merge; do
  mkdir -p "corpus/$target"
done
for case in "$conformance"/*/; do
  name=$(basename "$case")
  for target in parse_classic parse_openmetrics parse_auto; do
    cp "$case/metrics" "corpus/$target/om_$name"
  done
done
for seed in seeds/classic/*; do
  name=$(basename "$seed" .prom)
  for target in parse_classic parse_openmetrics parse_auto; do
    cp "$seed" "corpus/$target/classic_$name"
  done
done
# merge: two or three classic sources separated by NUL bytes.
seeds=(seeds/classic/*)
for ((i = 0; i < ${#seeds[@]}; i++)); do
  a=${seeds[$i]}
  b=${seeds[$(((i + 1) % ${#seeds[@]}))]}
  c=${seeds[$(((i + 2) % ${#seeds[@]}))]}
  { cat "$a"; printf '\0'; cat "$b"; } >"corpus/merge/two_$i"
  { cat "$a"; printf '\0'; cat "$a"; printf '\0'; cat "$c"; } >"corpus/merge/three_$i"
done
