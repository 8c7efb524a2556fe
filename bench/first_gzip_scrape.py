#!/usr/bin/env python3
"""CPU of the first gzip scrape after a burst of changes, as Prometheus would find it.

  bench/first_gzip_scrape.py BIN [--files 1000] [--rounds 10]

Writes FILES files sharing family names (bench/churn.py's), starts the exporter BIN on them,
then ROUNDS times: rewrites about 150 files spread over the directory (most chunks change),
waits a second (every change published), and asks once for /metrics with Prometheus's Accept
header and gzip. Prints the exporter's CPU time (utime + stime of /proc/PID/stat) and the wall
time of that scrape, averaged, and the gzip body's size: the cost of compressing again what
changed. Run binaries one after the other to compare them. Loopback only; stopped by PID.
"""
import http.client
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import churn  # noqa: E402


def main():
    args = churn.side_by_side_arguments(__doc__, 1000, rounds=10)
    with churn.serving_churn_files(args.exporter, args.files, churn.RAISED_CAPS) as (p, port, d):
        churn.get(port)
        cpu = wall = 0.0
        for r in range(args.rounds):
            for i in range(0, args.files, max(1, args.files // 150)):
                churn.write_atomically(d, i, 2 + r)
            time.sleep(1.0)
            c0, t0 = churn.cpu_seconds(p.pid), time.monotonic()
            churn.get(port)
            wall += time.monotonic() - t0
            cpu += churn.cpu_seconds(p.pid) - c0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", "/metrics", headers={"Accept": churn.PROMETHEUS_ACCEPT,
                                                 "Accept-Encoding": "gzip"})
        size = len(conn.getresponse().read())
        conn.close()
    print(f"{os.path.basename(args.exporter)}: first gzip scrape after ~150 changes, "
          f"{args.files} files: CPU {cpu / args.rounds * 1000:.1f} ms, "
          f"wall {wall / args.rounds * 1000:.1f} ms (mean of {args.rounds}); "
          f"gzip body {size} bytes")


if __name__ == "__main__":
    main()
