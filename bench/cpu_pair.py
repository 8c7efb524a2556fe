#!/usr/bin/env python3
"""CPU a change of two exporter binaries measured at the same time, so that both see the machine
in the same state.

  bench/cpu_pair.py OLD NEW [--files 1000] [--rate 10] [--seconds 40] [--rounds 3]
                    [--exporter-arg FLAG ...]

Each binary serves its own directory of FILES files sharing family names (bench/churn.py's),
rewritten by atomic rename RATE times a second, with a gzip scrape every 15 s, for SECONDS;
both run at once (a thread each). Prints the CPU seconds per change of each (utime + stime of
/proc/PID/stat) and NEW / OLD, per round. On a shared VM the wall-clock cost of one binary
moves by 2x between windows; the ratio from one window does not. Loopback only; both
exporters are stopped by PID.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import churn  # noqa: E402


def cpu_per_change(exporter, files, rate, seconds, out, key, extra_args=()):
    """Churns FILES files under EXPORTER (with EXTRA_ARGS) for SECONDS; stores the CPU ms per
    change in OUT[KEY]."""
    with churn.serving_churn_files(exporter, files, extra_args) as (process, port, directory):
        churn.get(port)
        time.sleep(0.5)
        start = churn.cpu_seconds(process.pid)
        began = time.monotonic()
        changes = 0
        next_scrape = began + 15
        while time.monotonic() - began < seconds:
            churn.write_atomically(directory, (changes * 37) % files, 2 + changes)
            changes += 1
            if time.monotonic() >= next_scrape:
                churn.get(port)
                next_scrape += 15
            time.sleep(1.0 / rate)
        out[key] = (churn.cpu_seconds(process.pid) - start) / changes * 1000


def main():
    args = churn.pair_arguments(__doc__, 1000, rate=10.0, seconds=40.0, rounds=3)
    for round_ in range(1, args.rounds + 1):
        out = {}
        threads = [
            threading.Thread(target=cpu_per_change,
                             args=(binary, args.files, args.rate, args.seconds, out, key, args.exporter_arg))
            for key, binary in (("old", args.old), ("new", args.new))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if "old" not in out or "new" not in out:
            sys.exit("cpu_pair.py: a run failed (see above)")
        print(f"round {round_}: old {out['old']:.2f} ms a change, new {out['new']:.2f} ms, "
              f"new / old {out['new'] / out['old']:.2f}")


if __name__ == "__main__":
    main()
