"""Runs every section of deploy/validate in order and reports: `python3 -m validate` from
deploy/ (deploy/validate.sh does, after checking the tools are there)."""

from __future__ import annotations

import sys

from . import admission, conformance, dashboard, dockerfile, flags, render, report, rules, schemas, workloads


def step(check, *args) -> None:
    """Runs one check; one that breaks (a file missing, an object of an unexpected shape) is a
    failure naming it, and the other sections still run."""
    try:
        check(*args)
    except Exception as e:  # noqa: BLE001 - reported as a failure, never swallowed
        report.fail(f"{check.__module__}.{check.__name__} stopped: {type(e).__name__}: {e}")


# The sections in order: a title, then its checks; a check named with True takes the rendered
# objects.
SECTIONS = [
    ("variants", [(workloads.variant_checks, True)]),
    ("Kubernetes schemas and the Prometheus Operator's CRDs",
     [(schemas.selftest, False), (schemas.validate_schemas, True)]),
    ("Pod Security (the admission plugin's fixtures, then every workload)",
     [(conformance.check, False), (workloads.pod_security, True)]),
    ("hostPath admission policy", [(admission.check, True)]),
    ("exporter, selectors, flags",
     [(workloads.exporter_checks, True), (workloads.selftest, False), (workloads.selector_checks, True),
      (flags.check, True)]),
    ("rules", [(rules.slug_selftest, False), (rules.rules_checks, True)]),
    ("dashboard", [(dashboard.dashboard_checks, False)]),
    ("Dockerfile", [(dockerfile.dockerfile_checks, False)]),
]


def main() -> int:
    print("kustomize:")
    rendered = render.render_all()
    for title, checks in SECTIONS:
        print(f"{title}:")
        for check, takes_rendered in checks:
            step(check, *([rendered] if takes_rendered else []))
    print()
    for what, n in report.counts.items():
        print(f"  {n:5d}  {what}")
    if report.failures:
        print(f"\ndeploy/validate: {len(report.failures)} FAILED:", file=sys.stderr)
        for f in report.failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print("\ndeploy/validate: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
