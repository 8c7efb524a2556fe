"""The Grafana dashboard: valid JSON, a data source variable used by every panel and query,
every query parsed by a PromQL parser (promql-parser, the Rust parser of GreptimeDB's
promql-parser crate) and every metric it reads one that promdrop or Prometheus provides, job
panels grouped by namespace and job_name, and tables of several queries merged."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import promql_parser
import yaml

from .render import DEPLOY
from .report import fail, ok, run, say

DASHBOARD = DEPLOY / "grafana" / "promdrop-dashboard.json"
OWN_METRICS = DEPLOY.parent / "crates" / "exporter" / "own-metrics.txt"


def own_metrics():
    """The exporter's own families, from the table its code writes them from (own-metrics.txt,
    generated from crates/exporter/src/names.rs): classic names, counters with `_total`."""
    names = set()
    for line in OWN_METRICS.read_text().splitlines():
        if line and not line.startswith("#"):
            names.add(line.split()[0])
    return names


KNOWN_METRICS = own_metrics() | {
    # writer outcome metrics, in every job file
    "promdrop_job_start_timestamp_seconds", "promdrop_job_end_timestamp_seconds", "promdrop_job_success",
    "promdrop_job_running", "promdrop_job_exit_reason", "promdrop_job_last_success_timestamp_seconds",
    # Prometheus's own, per target
    "up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    # recording rules of deploy/prometheus/promdrop.rules.yml
    "promdrop:job_max_age_seconds", "promdrop:job_max_age_seconds:override",
}
KNOWN_PREFIXES = ("process_",)
# Grafana's own variables, replaced by values of their kind before parsing.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def to_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: its range variables replaced by durations (variables
    inside label values stay, they are strings), label_values(q, label) reduced to q."""
    for var, value in GRAFANA_RANGES.items():
        expr = expr.replace(var, value)
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", expr, re.S)
    return m.group(1) if m else expr


def metric_names(expr) -> set[str]:
    """The metric names a parsed expression reads."""
    names = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    names.add(m.value)
        return True

    promql_parser.walk(expr, visit)
    return names


def grouping(expr) -> list[set[str]]:
    """The label sets of every `by (...)` aggregation in a parsed expression."""
    out = []

    def visit(node):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None \
                and node.modifier.type == promql_parser.AggModifierType.By:
            out.append(set(node.modifier.labels))
        return True

    promql_parser.walk(expr, visit)
    return out


def selftest() -> None:
    cases = {
        'sum by (state) (promdrop_files{job=~"$job"})': {"promdrop_files"},
        'rate(process_cpu_seconds_total{a="b{c}"}[5m]) * on (x, y) group_left () up offset 5m': {"process_cpu_seconds_total", "up"},
        '{__name__="promdrop_job_success"} and bogus_metric': {"promdrop_job_success", "bogus_metric"},
    }
    for expr, want in cases.items():
        got = metric_names(promql_parser.parse(expr))
        if got != want:
            fail(f"metric_names self-test: {expr!r} gave {sorted(got)}, expected {sorted(want)}")
    try:
        promql_parser.parse("sum(up")
        fail("PromQL parser self-test: an unclosed parenthesis parses")
    except ValueError:
        ok("dashboard self-tests")


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard_checks() -> None:
    selftest()
    try:
        dash = json.loads(DASHBOARD.read_text())
    except json.JSONDecodeError as e:
        fail(f"{DASHBOARD.name}: not JSON: {e}")
        return
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = [v for v in variables.values() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if not ds:
        fail(f"{DASHBOARD.name}: no Prometheus datasource template variable")
        return
    ds_ref = "${%s}" % ds[0]["name"]
    exprs = []  # (where, query, panel or None)
    for v in variables.values():
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            exprs.append((f"variable {v['name']}", q, None))
            if v.get("datasource", {}).get("uid") != ds_ref:
                fail(f"{DASHBOARD.name}: variable {v['name']} does not use the {ds_ref} data source")
    n_panels = 0
    for p in walk_panels(dash.get("panels", [])):
        if p.get("type") == "row":
            continue
        n_panels += 1
        title = p.get("title")
        if p.get("datasource", {}).get("uid") != ds_ref:
            fail(f"{DASHBOARD.name}: panel {title!r} does not use the {ds_ref} data source")
        targets = p.get("targets", [])
        if not targets:
            fail(f"{DASHBOARD.name}: panel {title!r} has no query")
        if p.get("type") == "table" and len(targets) > 1 \
                and "merge" not in [t.get("id") for t in p.get("transformations", [])]:
            fail(f"{DASHBOARD.name}: table {title!r} has {len(targets)} queries and no merge transformation")
        for t in targets:
            exprs.append((f"panel {title!r}", t.get("expr", ""), p))
            if t.get("datasource", {}).get("uid") != ds_ref:
                fail(f"{DASHBOARD.name}: a query of panel {title!r} does not use {ds_ref}")
    ids = [p.get("id") for p in walk_panels(dash.get("panels", []))]
    if len(ids) != len(set(ids)):
        fail(f"{DASHBOARD.name}: panel ids are not unique")
    unknown: dict[str, list[str]] = {}
    names_read = set()
    parsed = 0
    for where, expr, panel in exprs:
        try:
            tree = promql_parser.parse(to_promql(expr))
        except ValueError as e:
            fail(f"{DASHBOARD.name}: {where}: {expr!r} does not parse: {e}")
            continue
        parsed += 1
        names = metric_names(tree)
        names_read |= names
        for name in names:
            if name not in KNOWN_METRICS and not name.startswith(KNOWN_PREFIXES):
                unknown.setdefault(name, []).append(where)
        # Jobs are told apart by namespace and job_name (tenancy): a job panel that
        # aggregates keeps both.
        if any(n.startswith("promdrop_job_") for n in names):
            for labels in grouping(tree):
                if not {"namespace", "job_name"} <= labels:
                    fail(f"{DASHBOARD.name}: {where}: aggregates jobs by {sorted(labels)}, without namespace and job_name")
    for name, where in sorted(unknown.items()):
        fail(f"{DASHBOARD.name}: unknown metric {name!r} (not exported by promdrop) in {', '.join(sorted(set(where)))}")
    newest_run_test(dash)
    ok("dashboard queries parsed (promql-parser)", parsed)
    ok("dashboard panels", n_panels)
    ok("dashboard metric names checked", len(names_read))
    say(f"dashboard: {n_panels} panels, {len(exprs)} queries parsed, data source variable {ds_ref}")


def newest_run_test(dash: dict) -> None:
    """'Job success' shows the newest run: with hostPath, an older success left on another
    node must not hide a newer failure. Its query runs in promtool's test engine on two
    exporters' series (the variables match everything) and must give 0, for each namespace
    apart."""
    panel = next((p for p in walk_panels(dash.get("panels", [])) if p.get("title") == "Job success"), None)
    if panel is None or not panel.get("targets"):
        fail(f"{DASHBOARD.name}: no 'Job success' panel")
        return
    expr = re.sub(r"\$\{?(\w+)\}?", ".*", to_promql(panel["targets"][0]["expr"]))

    def series(metric, instance, namespace, value):
        return {"series": f'{metric}{{job="promdrop-exporter",instance="{instance}",namespace="{namespace}",job_name="backup"}}',
                "values": f"{value}x10"}

    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # team-a: an old success on node a, the newest run (node b) failed
                series("promdrop_job_start_timestamp_seconds", "a:9466", "team-a", 1000),
                series("promdrop_job_success", "a:9466", "team-a", 1),
                series("promdrop_job_start_timestamp_seconds", "b:9466", "team-a", 2000),
                series("promdrop_job_success", "b:9466", "team-a", 0),
                # team-b, same job_name: its newest run succeeded
                series("promdrop_job_start_timestamp_seconds", "a:9466", "team-b", 3000),
                series("promdrop_job_success", "a:9466", "team-b", 1),
            ],
            "promql_expr_test": [{
                "expr": expr,
                "eval_time": "5m",
                "exp_samples": [
                    {"labels": '{namespace="team-a",job_name="backup"}', "value": 0},
                    {"labels": '{namespace="team-b",job_name="backup"}', "value": 1},
                ],
            }],
        }],
    }
    with tempfile.TemporaryDirectory() as t:
        path = Path(t) / "dashboard.test.yml"
        path.write_text(yaml.safe_dump(test))
        r = run(["promtool", "test", "rules", str(path)])
    if r.returncode != 0:
        fail(f"{DASHBOARD.name}: 'Job success' does not show each job's newest run:\n{r.stdout}{r.stderr}")
    else:
        ok("dashboard query tests (promtool)")
        say("dashboard: 'Job success' shows the newest run per namespace and job_name (promtool test)")
