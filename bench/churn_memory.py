#!/usr/bin/env python3
"""Resident memory of the exporter over files sharing family names, after its bodies are made.

  bench/churn_memory.py BIN [--files 10000]

Writes FILES files of 100 series (bench/churn.py's, sharing family names), starts the exporter
BIN with the directory caps raised as bench/churn.sh raises them for 1M series, waits until it
serves every file, then asks for the plain body once, the OpenMetrics gzip body three times
and the classic gzip body twice, printing VmRSS (and the plain body's size) after each. Run
binaries one after the other to compare them. Loopback only; stopped by PID.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import churn  # noqa: E402


def main():
    args = churn.side_by_side_arguments(__doc__, 10000)
    with churn.serving_churn_files(args.exporter, args.files, churn.RAISED_CAPS) as (p, port, _):

        def rss_mb():
            with open(f"/proc/{p.pid}/status") as status:
                return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024

        print(f"ready: {rss_mb():.0f} MB")
        plain = churn.get(port, accept="text/plain;version=0.0.4", encoding="identity")
        print(f"plain body {len(plain) / 1e6:.1f} MB: {rss_mb():.0f} MB")
        for _ in range(3):
            churn.get(port)
        print(f"OpenMetrics gzip x3: {rss_mb():.0f} MB")
        for _ in range(2):
            churn.get(port, accept="text/plain;version=0.0.4")
        rss = rss_mb()
        print(f"classic gzip x2: {rss:.0f} MB ({rss * 1024 * 1024 / len(plain):.2f}x the plain body)")


if __name__ == "__main__":
    main()
