#!/usr/bin/env python3
"""Time of the first /metrics request after a few changes, two exporter binaries side by side.

  bench/first_request_pair.py OLD NEW [--files 10000] [--rounds 30] [--changes 5]
                              [--exporter-arg FLAG ...]

Writes FILES files sharing family names (bench/churn.py's) and starts both binaries on that one
directory. Then ROUNDS times: rewrites CHANGES files spread over the directory, waits 0.3 s
(every change published), and sends each server one request as bench/churn.py's prober does
(gzip, Prometheus's Accept header, read only as far as the first family block), the order
of the two alternating from round to round. This is the request that pays for what the
changes left to do at the next scrape (listing the body, compressing the changed chunks,
joining), and its time is what the churn benchmark's rename-visible latency adds to each
poll. Prints each binary's p50 and p90 wall time and
NEW/OLD of the p50s. Both in the same window, on the same files: on a noisy machine, only the
ratio is worth comparing across runs. Loopback only; both stopped by PID.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import churn  # noqa: E402


def main():
    args = churn.pair_arguments(__doc__, 10000, rounds=30, changes=5)
    work = tempfile.mkdtemp(prefix="promdrop-first-request.")
    servers = []
    try:
        for i in range(args.files):
            churn.write_atomically(work, i, 1)
        for binary in (args.old, args.new):
            port = churn.free_port()
            p = subprocess.Popen(
                [binary, f"--textfile.directory={work}", f"--web.listen-address=127.0.0.1:{port}",
                 "--log.level=warn", *churn.RAISED_CAPS, *args.exporter_arg],
                stdout=subprocess.DEVNULL,
            )
            servers.append((binary, p, port))
        for _, _, port in servers:
            churn.wait_serving(port, args.files)
            churn.get(port)
        times = {binary: [] for binary, _, _ in servers}
        n = 0
        for round_ in range(args.rounds):
            for _ in range(args.changes):
                churn.write_atomically(work, (n * 7919 + 1) % args.files, 2 + n)
                n += 1
            time.sleep(0.3)
            # The order alternates: the first server asked measured slower in a fixed order
            # (up to 2x with the same binary twice).
            for binary, _, port in servers if round_ % 2 else servers[::-1]:
                sent_at, _ = churn.probe_seen(port, b"never in the body")
                times[binary].append(1000 * (time.monotonic() - sent_at))
        p50 = {}
        for binary, _, _ in servers:
            p50[binary] = churn.percentile(times[binary], 50)
            print(f"{binary}: first request after {args.changes} changes, {args.files} files: "
                  f"p50 {p50[binary]:.1f} ms, p90 {churn.percentile(times[binary], 90):.1f} ms "
                  f"over {args.rounds} rounds")
        print(f"new/old p50: {p50[args.new] / p50[args.old]:.2f}")
    finally:
        for _, p, _ in servers:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
