#!/usr/bin/env python3
"""Generates benchmark expositions: FAMILIES families of SERIES series, the shape PEERS.md measures
the peers on (1,000 x 100 = 100k series, about 7 MB), the same as the criterion benchmark in
crates/textformat/benches/parse_render.rs.

  gen_exposition.py --single FILE [--families 1000] [--series 100]
      one file holding every family
  gen_exposition.py --dir DIR [--families 1000] [--series 100]
      one file per family, DIR/job_NNNN.prom, as 1,000 jobs would leave them
"""
import argparse
import os


def family(f, series):
    name = f"batch_job_{f:04}_records_processed"
    lines = [f"# HELP {name} Records processed by step {f}.\n", f"# TYPE {name} gauge\n"]
    for s in range(series):
        value = (f * 7919 + s * 104729) % 1000003
        lines.append(
            f'{name}{{instance="node-{s:03}",job="etl",shard="{s % 16}"}} {value}.{s % 10}\n'
        )
    return "".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", type=int, default=1000)
    parser.add_argument("--series", type=int, default=100)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--single", help="write one file")
    target.add_argument("--dir", help="write one file per family into this directory")
    args = parser.parse_args()
    if args.single:
        with open(args.single, "w") as out:
            for f in range(args.families):
                out.write(family(f, args.series))
    else:
        os.makedirs(args.dir, exist_ok=True)
        for f in range(args.families):
            path = os.path.join(args.dir, f"job_{f:04}.prom")
            with open(path + ".tmp", "w") as out:
                out.write(family(f, args.series))
            os.rename(path + ".tmp", path)


if __name__ == "__main__":
    main()
