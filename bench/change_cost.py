#!/usr/bin/env python3
"""Instructions one change costs the real exporter, counted by callgrind.

  bench/change_cost.py --exporter target/release/promdrop-exporter --files 1000 --changes 20

Writes FILES files of 100 series sharing family names (as bench/churn.py writes them), starts
the exporter under `valgrind --tool=callgrind --instr-atstart=no`, waits until it serves every
file, then counts instructions while CHANGES files are rewritten by atomic rename, one every
GAP seconds (each its own publication: slow enough for valgrind), with no scrape (--scrape
adds one gzip OpenMetrics scrape at the end, as Prometheus would ask). Prints the instructions
per change and the functions that took most (inclusive), from callgrind_annotate.

Wall time is noisy on a shared machine; instructions are not. They do not show what memory
latency costs (cache and TLB misses): CPU seconds from bench/churn.sh do.
Needs valgrind (apt-get install valgrind). Loopback only; the exporter is stopped by PID.
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import churn  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between changes")
    ap.add_argument("--scrape", action="store_true", help="one gzip scrape after the changes")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/change_cost.py: {tool} not found: apt-get install valgrind")
    work = tempfile.mkdtemp(prefix="promdrop-change-cost.")
    directory = os.path.join(work, "d")
    os.makedirs(directory)
    out = os.path.join(work, "callgrind.out")
    proc = None
    try:
        for i in range(args.files):
            churn.write_atomically(directory, i, 1)
        port = churn.free_port()
        # 1M series pass the default caps; no periodic listing inside the count.
        caps = [*churn.RAISED_CAPS, "--rescan-interval=1h"]
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             args.exporter, f"--textfile.directory={directory}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"] + caps,
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "valgrind.log"), "w"))
        churn.wait_serving(port, args.files, 900)
        churn.get(port)  # the first gzip body, compressed before counting
        time.sleep(1)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        rng = random.Random(1)
        for n in range(args.changes):
            churn.write_atomically(directory, rng.randrange(args.files), 2 + n)
            time.sleep(args.gap)
        time.sleep(2)
        if args.scrape:
            churn.get(port)
            time.sleep(1)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
        dumps = sorted(p for p in os.listdir(work) if p.startswith("callgrind.out."))
        if not dumps:
            sys.exit("bench/change_cost.py: callgrind wrote no dump")
        report = subprocess.run(["callgrind_annotate", "--inclusive=yes", os.path.join(work, dumps[-1])],
                                check=True, capture_output=True, text=True).stdout
        total = int(re.search(r"^([\d,]+) .*PROGRAM TOTALS", report, re.M).group(1).replace(",", ""))
        what = " and one gzip scrape" if args.scrape else ""
        print(f"{args.files} files: {total / 1e6:.1f} M instructions for {args.changes} changes{what}: "
              f"{total / args.changes / 1e6:.2f} M a change")
        shown = 0
        for line in report.splitlines():
            m = re.match(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S+?):(\S+)", line)
            if m and ("promdrop" in m.group(4) or "memset" in m.group(4) or "deflate" in m.group(4)):
                print(f"  {int(m.group(1).replace(',', '')) / args.changes / 1e6:8.2f} M  {m.group(4)[:110]}")
                shown += 1
                if shown == args.top:
                    break
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
