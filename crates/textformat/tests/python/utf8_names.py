"""Python prometheus_client's side of crates/textformat/tests/utf8_names.rs.

    utf8_names.py escape           names (a JSON list) on stdin; prints, per name, its metric-name
                                   and label-name escapes under every scheme.
    utf8_names.py registry SEED N  builds a registry of N random metrics with UTF-8 metric and
                                   label names (seeded, so a failure can be replayed), and prints
                                   what generate_latest(escaping=allow-utf-8) and the OpenMetrics
                                   encoder write of it, with the samples prometheus_client's own
                                   parsers read back from each.
"""
import json
import random
import sys

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as om
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_classic

SCHEMES = [om.ALLOWUTF8, om.UNDERSCORES, om.DOTS, om.VALUES]


def escape():
    names = json.load(sys.stdin)
    out = []
    for name in names:
        out.append({s: [om.escape_metric_name(name, s), om.escape_label_name(name, s)] for s in SCHEMES})
    json.dump(out, sys.stdout)


# Characters of the random names: legacy ones, dots, dashes, spaces, a colon, non-ASCII.
# Metric names hold no quote, backslash or newline: prometheus_client's OpenMetrics parser
# cannot read them back escaped in a metric name (see tests/fixtures/openmetrics/
# quoted_name_escapes); label names do.
METRIC_CHARS = "abcxyzABZ_0189.-: éü✓😀"
LABEL_CHARS = METRIC_CHARS + '"\\\n'


def random_name(rng, chars, legacy_chance=0.3):
    if rng.random() < legacy_chance:
        return rng.choice("abcdefgh") + "".join(rng.choice("abc_019") for _ in range(rng.randint(0, 6)))
    name = "".join(rng.choice(chars) for _ in range(rng.randint(1, 10)))
    # prometheus_client's legacy-name check (a regular expression ending in `$`) takes a legacy
    # name followed by a newline for a legacy name and writes it unquoted, which no parser reads.
    return name + "x" if name.endswith("\n") else name


def samples(families):
    return [[s.name, s.labels, s.value] for f in families for s in f.samples]


def build_registry(seed, count, escapable=False):
    """A registry of `count` random metrics with UTF-8 metric and label names, seeded.

    With `escapable`, an enum's name holds no `:`: prometheus_client writes an enum as an
    OpenMetrics stateset whose label is named after the metric, and escaping turns `:` into
    `_` in the label name but keeps it in the metric name, so its own escaped output is not a
    valid stateset any more; and no two label names of a metric are the same once escaped
    (prometheus_client would write a series with a label twice, which no parser reads; the
    exporter leaves such a series out of that escaping's exposition and counts it)."""
    rng = random.Random(seed)
    reg = CollectorRegistry()
    used = set()
    made = 0
    while made < count:
        # Reserved endings and names that could clash with another metric's samples are avoided
        # by giving each metric a distinct numbered prefix.
        name = f"m{made}{random_name(rng, METRIC_CHARS)}"
        if name in used:
            continue
        used.add(name)
        labels = []
        for _ in range(rng.randint(0, 3)):
            label = random_name(rng, LABEL_CHARS)
            if label.startswith("__") or label in labels or label in ("le", "quantile") or label == name:
                continue
            if escapable and any(
                om.escape_label_name(label, s) == om.escape_label_name(other, s)
                for s in SCHEMES
                for other in labels + [name]
            ):
                continue
            labels.append(label)
        kind = rng.choice(["counter", "gauge", "histogram", "summary", "info", "enum"])
        if escapable and kind == "enum" and ":" in name:
            kind = "gauge"
        values = lambda: [random_name(rng, LABEL_CHARS, 0.5) for _ in labels]
        if kind == "counter":
            metric = Counter(name, "help " + name, labels, registry=reg)
            for _ in range(rng.randint(1, 3)):
                (metric.labels(*values()) if labels else metric).inc(rng.randint(0, 100))
        elif kind == "gauge":
            metric = Gauge(name, "help", labels, registry=reg)
            for _ in range(rng.randint(1, 3)):
                (metric.labels(*values()) if labels else metric).set(rng.uniform(-1e6, 1e6))
        elif kind == "histogram":
            metric = Histogram(name, "help", labels, buckets=[0.1, 1, 10], registry=reg)
            for _ in range(rng.randint(1, 3)):
                (metric.labels(*values()) if labels else metric).observe(rng.uniform(0, 20))
        elif kind == "summary":
            metric = Summary(name, "help", labels, registry=reg)
            for _ in range(rng.randint(1, 3)):
                (metric.labels(*values()) if labels else metric).observe(rng.uniform(0, 20))
        elif kind == "info":
            metric = Info(name, "help", labels, registry=reg)
            info = {random_name(rng, LABEL_CHARS): "v" for _ in range(rng.randint(1, 2))}
            info = {k: v for k, v in info.items() if not k.startswith("__") and k not in labels}
            (metric.labels(*values()) if labels else metric).info(info)
        else:
            states = sorted({random_name(rng, LABEL_CHARS, 0.5) for _ in range(rng.randint(1, 3))})
            metric = Enum(name, "help", labels, states=states, registry=reg)
            (metric.labels(*values()) if labels else metric).state(rng.choice(states))
        made += 1
    return reg


def registry(seed, count):
    reg = build_registry(seed, count)
    classic = generate_latest(reg, escaping=om.ALLOWUTF8).decode("utf-8")
    openmetrics = om.generate_latest(reg, escaping=om.ALLOWUTF8).decode("utf-8")
    json.dump(
        {
            "classic": classic,
            "classic_samples": samples(parse_classic(classic)),
            "openmetrics": openmetrics,
            "openmetrics_samples": samples(parse_om(openmetrics)),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    if sys.argv[1] == "escape":
        escape()
    else:
        registry(int(sys.argv[2]), int(sys.argv[3]))
