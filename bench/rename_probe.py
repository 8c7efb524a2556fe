#!/usr/bin/env python3
"""Rename-visible latency of one file among many, with nothing else changing.

  bench/rename_probe.py BIN [--files 1000] [--probes 150]

Writes FILES files sharing family names (bench/churn.py's), starts the exporter BIN, then
PROBES times rewrites the first file (job_00000, first in serving order) by atomic rename and
polls /metrics (gzip, Prometheus's Accept header, read only as far as the first family block,
as bench/churn.py's prober does) until its new generation shows. Prints p50, p99 and the
maximum, from just before the rename to the sending of the poll that saw it. Run binaries one
after the other to compare them. Loopback only; stopped by PID.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import churn  # noqa: E402


def main():
    args = churn.side_by_side_arguments(__doc__, 1000, probes=150)
    latencies = []
    with churn.serving_churn_files(args.exporter, args.files) as (_, port, d):
        churn.get(port)
        for n in range(args.probes):
            generation = 1000 + n
            needle = f'churn_generation{{job="job_00000"}} {generation}\n'.encode()
            start = time.monotonic()
            churn.write_atomically(d, 0, generation)
            while True:
                sent_at, seen = churn.probe_seen(port, needle)
                if seen:
                    latencies.append((sent_at - start) * 1000)
                    break
                if time.monotonic() > start + 10:
                    raise SystemExit(f"generation {generation} not visible after 10 s")
                time.sleep(0.002)
            time.sleep(0.05)
    print(f"{os.path.basename(args.exporter)}: rename visible over {len(latencies)} probes, "
          f"{args.files} files: p50 {churn.percentile(latencies, 50):.1f} ms, "
          f"p99 {churn.percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms")


if __name__ == "__main__":
    main()
