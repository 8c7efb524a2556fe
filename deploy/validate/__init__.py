"""Offline validation of everything under deploy/, the Dockerfile and .dockerignore, one
module per section (run by deploy/validate.sh, which CI runs):

- render: every overlay, component variant and example through `kubectl kustomize`;
- schemas: built-in objects against the Kubernetes schemas of kubernetes-validate (strict),
  ServiceMonitor, PodMonitor and PrometheusRule against the Operator's real CRDs (strict);
- podsecurity + conformance: the Pod Security Standards as the admission plugin applies them,
  tested on all of its own fixtures; workloads: every pod template at the level its namespace
  enforces, the house rules, the exporter's settings, selectors;
- admission: the hostPath ValidatingAdmissionPolicy's CEL evaluated with cel-python;
- flags: the flags the manifests pass exist in the binaries' --help;
- rules: promtool check/test rules, runbook anchors in docs/OPERATIONS.md, the scrape config;
- dashboard: the Grafana queries parsed by promql-parser;
- dockerfile: the Dockerfile's paths, packages and binaries.

Each check prints a line; every failure is listed again at the end, and makes the exit
status 1.
"""
