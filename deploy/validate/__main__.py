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


def main() -> int:
    print("kustomize:")
    rendered = render.render_all()
    step(workloads.variant_checks, rendered)
    print("Kubernetes schemas and the Prometheus Operator's CRDs:")
    step(schemas.selftest)
    step(schemas.validate_schemas, rendered)
    print("Pod Security (the admission plugin's fixtures, then every workload):")
    step(conformance.check)
    step(workloads.pod_security, rendered)
    print("hostPath admission policy:")
    step(admission.check, rendered)
    print("exporter, selectors, flags:")
    step(workloads.exporter_checks, rendered)
    step(workloads.selftest)
    step(workloads.selector_checks, rendered)
    step(flags.check, rendered)
    print("rules:")
    step(rules.slug_selftest)
    step(rules.rules_checks, rendered)
    print("dashboard:")
    step(dashboard.dashboard_checks)
    print("Dockerfile:")
    step(dockerfile.dockerfile_checks)
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
