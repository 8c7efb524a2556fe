"""Python prometheus_client's side of tests/e2e/tests/utf8_negotiation.rs.

    utf8_variants.py SEED N  builds the random registry of crates/textformat/tests/python/
                             utf8_names.py (N metrics with UTF-8 metric and label names, seeded)
                             and prints, as JSON, the files the exporter serves (the classic
                             and OpenMetrics encoders with escaping=allow-utf-8) and, for every
                             escaping scheme, what its encoders write with that escaping (its
                             own classic parser refuses some of it: a label escaped to a name
                             starting with `__`, so the test reads it with promdrop's parser,
                             which reads prometheus_client's allow-utf-8 output to the samples
                             prometheus_client's parsers read: crates/textformat/tests/
                             utf8_names.rs).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "crates", "textformat", "tests", "python"))

from prometheus_client.exposition import generate_latest  # noqa: E402
from prometheus_client.openmetrics import exposition as om  # noqa: E402
from utf8_names import SCHEMES, build_registry  # noqa: E402


def main():
    reg = build_registry(int(sys.argv[1]), int(sys.argv[2]), escapable=True)
    out = {
        "classic_file": generate_latest(reg, escaping=om.ALLOWUTF8).decode("utf-8"),
        "openmetrics_file": om.generate_latest(reg, escaping=om.ALLOWUTF8).decode("utf-8"),
        "classic": {},
        "openmetrics": {},
    }
    for scheme in SCHEMES:
        out["classic"][scheme] = generate_latest(reg, escaping=scheme).decode("utf-8")
        out["openmetrics"][scheme] = om.generate_latest(reg, escaping=scheme).decode("utf-8")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
