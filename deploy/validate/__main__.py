"""Runs every section of deploy/validate in order and reports: `python3 -m validate` from
deploy/ (deploy/validate.sh does, after checking the tools are there)."""

from __future__ import annotations

import sys

from . import admission, conformance, dashboard, dockerfile, flags, render, report, rules, schemas, workloads


def main() -> int:
    print("kustomize:")
    rendered = render.render_all()
    workloads.variant_checks(rendered)
    print("Kubernetes schemas and the Prometheus Operator's CRDs:")
    schemas.selftest()
    schemas.validate_schemas(rendered)
    print("Pod Security (the admission plugin's fixtures, then every workload):")
    conformance.check()
    workloads.pod_security(rendered)
    print("hostPath admission policy:")
    admission.check(rendered)
    print("exporter, selectors, flags:")
    workloads.exporter_checks(rendered)
    workloads.selftest()
    workloads.selector_checks(rendered)
    flags.check(rendered)
    print("rules:")
    rules.slug_selftest()
    rules.rules_checks(rendered)
    print("dashboard:")
    dashboard.dashboard_checks()
    print("Dockerfile:")
    dockerfile.dockerfile_checks()
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
