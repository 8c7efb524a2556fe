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
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import churn  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exporter")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--probes", type=int, default=150)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="promdrop-rename-probe.")
    p = None
    try:
        for i in range(args.files):
            churn.write_atomically(d, i, 1)
        port = churn.free_port()
        p = subprocess.Popen([args.exporter, f"--textfile.directory={d}",
                              f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
        churn.wait_serving(port, args.files, 300)
        churn.get(port)
        latencies = []
        for n in range(args.probes):
            generation = 1000 + n
            needle = f'churn_generation{{job="job_00000"}} {generation}\n'.encode()
            start = time.monotonic()
            churn.write_atomically(d, 0, generation)
            deadline = start + 10
            while True:
                sent_at, seen = churn.probe_seen(port, needle)
                if seen:
                    latencies.append((sent_at - start) * 1000)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"generation {generation} not visible after 10 s")
                time.sleep(0.002)
            time.sleep(0.05)
        print(f"{os.path.basename(args.exporter)}: rename visible over {len(latencies)} probes, "
              f"{args.files} files: p50 {churn.percentile(latencies, 50):.1f} ms, "
              f"p99 {churn.percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms")
    finally:
        if p:
            p.terminate()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
