"""Alert rules: generate-rules.sh --check (the PrometheusRule is generated from the plain
file); promtool check rules on both forms, which must hold the same groups; every alert's
annotations, severity and runbook_url, whose anchor must exist in docs/OPERATIONS.md (GitHub's
heading slugs); every alert tested firing and silent; promtool test rules; the scrape config
through promtool check config."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import yaml

from .render import DEPLOY, ROOT, by_kind
from .report import fail, ok, promtool, run, say

RULES = DEPLOY / "prometheus" / "promdrop.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "promdrop.rules.test.yml"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "scrape-config.yaml"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
RUNBOOK_PREFIX = "https://github.com/promdrop/promdrop/blob/main/docs/OPERATIONS.md#"


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, link targets and punctuation
    dropped (letters, digits, `_`, `-` and spaces kept), spaces turned into `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown document, duplicates numbered as GitHub does
    (`x`, `x-1`, `x-2`); headings inside fenced code blocks are not headings."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = github_slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def slug_selftest() -> None:
    cases = {
        "PromdropJobFailed": "promdropjobfailed",
        "Pairing with kube-state-metrics' job alerts": "pairing-with-kube-state-metrics-job-alerts",
        "`--expire-after` and copies on other nodes": "--expire-after-and-copies-on-other-nodes",
        "SELinux: `container_file_t`": "selinux-container_file_t",
    }
    for heading, want in cases.items():
        if github_slug(heading) != want:
            fail(f"slug self-test: {heading!r} gave {github_slug(heading)!r}, expected {want!r}")
    if anchors("# A\n## A\n```\n# B\n```\n") != {"a", "a-1"}:
        fail("slug self-test: duplicate headings or fenced code handled wrongly")
    ok("anchor self-tests")


def rules_checks(rendered: dict[str, list[dict]]) -> None:
    r = run([str(DEPLOY / "generate-rules.sh"), "--check"])
    if r.returncode != 0:
        fail(f"PrometheusRule out of date with the rules file:\n{r.stderr}")
    else:
        ok("rule files checked")
        say("generate-rules.sh --check: the PrometheusRule matches promdrop.rules.yml")
    if promtool(["check", "rules", str(RULES)], "plain rules file"):
        ok("rule files checked")
    plain = yaml.safe_load(RULES.read_text())
    rules = [x for g in plain["groups"] for x in g["rules"]]
    alerts = [x for x in rules if "alert" in x]
    ok("rules", len(rules))
    ok("alerts", len(alerts))
    with tempfile.TemporaryDirectory() as t:
        for name, docs in rendered.items():
            for pr in by_kind(docs, "PrometheusRule"):
                path = Path(t) / f"{name.replace('/', '_')}.rules.yml"
                path.write_text(yaml.safe_dump({"groups": pr["spec"]["groups"]}))
                if promtool(["check", "rules", str(path)], f"{name}: PrometheusRule"):
                    ok("rule files checked")
                if pr["spec"]["groups"] != plain["groups"]:
                    fail(f"{name}: the PrometheusRule's groups differ from {RULES.name}")
    runbooks = anchors(OPERATIONS.read_text())
    for rule in alerts:
        ann = rule.get("annotations", {})
        missing = {"summary", "description", "runbook_url"} - set(ann)
        if missing:
            fail(f"alert {rule['alert']}: missing annotations {sorted(missing)}")
        url = ann.get("runbook_url", "")
        if not url.startswith(RUNBOOK_PREFIX):
            fail(f"alert {rule['alert']}: runbook_url {url!r} is not under {RUNBOOK_PREFIX}")
        elif url[len(RUNBOOK_PREFIX):] not in runbooks:
            fail(f"alert {rule['alert']}: runbook_url anchor #{url[len(RUNBOOK_PREFIX):]} is no heading of docs/OPERATIONS.md")
        else:
            ok("runbook anchors found in docs/OPERATIONS.md")
        if "severity" not in rule.get("labels", {}):
            fail(f"alert {rule['alert']}: no severity label")
    tests = yaml.safe_load(RULES_TEST.read_text())
    cases = [a for t in tests["tests"] for a in t.get("alert_rule_test", [])]
    for rule in alerts:
        if not any(a["alertname"] == rule["alert"] and a.get("exp_alerts") for a in cases):
            fail(f"alert {rule['alert']}: no test in {RULES_TEST.name} where it fires")
        if not any(a["alertname"] == rule["alert"] and not a.get("exp_alerts") for a in cases):
            fail(f"alert {rule['alert']}: no test in {RULES_TEST.name} where it stays silent")
    r = run(["promtool", "test", "rules", str(RULES_TEST)], cwd=RULES_TEST.parent)
    if r.returncode != 0:
        fail(f"promtool test rules:\n{r.stdout}{r.stderr}")
    else:
        n = len(cases) + sum(len(t.get("promql_expr_test", [])) for t in tests["tests"])
        ok("rule unit test cases passed", n)
        say(f"promtool test rules: {n} cases in {len(tests['tests'])} groups")
    scrape_config_check()


def scrape_config_check() -> None:
    """promtool check config on the scrape config. Debian's Prometheus is built without the
    Kubernetes service discovery, so kubernetes_sd_configs are checked here (EndpointSlice
    role, only ready endpoints kept) and swapped for a static target for promtool, which then
    checks the rest (relabelling, durations)."""
    cfg = yaml.safe_load(SCRAPE_CONFIG.read_text())
    for job in cfg["scrape_configs"]:
        if job.get("honor_labels"):
            fail(f"{SCRAPE_CONFIG.name}: job {job['job_name']}: honor_labels would let files set job and instance")
        for sd in job.pop("kubernetes_sd_configs", []):
            if sd.get("role") != "endpointslice":
                fail(f"{SCRAPE_CONFIG.name}: kubernetes_sd_configs role {sd.get('role')!r}, expected endpointslice")
            if set(sd) - {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}:
                fail(f"{SCRAPE_CONFIG.name}: unknown kubernetes_sd_configs fields {set(sd)}")
        ready = [rc for rc in job.get("relabel_configs", [])
                 if rc.get("source_labels") == ["__meta_kubernetes_endpointslice_endpoint_conditions_ready"]
                 and rc.get("action") == "keep" and rc.get("regex") == "true"]
        if not ready:
            fail(f"{SCRAPE_CONFIG.name}: job {job['job_name']} keeps endpoints that are not ready")
        job["static_configs"] = [{"targets": ["127.0.0.1:9466"]}]
    cfg["rule_files"] = [str(RULES)]
    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / "prometheus.yml"
        p.write_text(yaml.safe_dump(cfg))
        if promtool(["check", "config", str(p)], SCRAPE_CONFIG.name):
            ok("scrape configs checked")
            say(f"promtool check config: {SCRAPE_CONFIG.name} (kubernetes_sd_configs swapped for a static target)")
