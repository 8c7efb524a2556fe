#!/usr/bin/env bash
# Validates deploy/, the Dockerfile and .dockerignore offline: kustomize builds, Kubernetes
# schemas and the Prometheus Operator's CRDs, Pod Security (checked against the admission
# plugin's own fixtures), the hostPath admission policy (CEL), selectors, the flags the
# manifests use, alert rules and their tests, runbook anchors, the dashboard, the Dockerfile.
# What each check does: deploy/validate/ (one module per section). Needs kubectl, promtool,
# cargo (to build the binaries whose flags the manifests use), Python with the packages in
# tests/requirements.txt, and ../shared/conformance beside the checkout.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v kubectl >/dev/null 2>&1 || missing+=("kubectl (for kubectl kustomize)")
command -v promtool >/dev/null 2>&1 || missing+=("promtool (Debian package prometheus)")
command -v cargo >/dev/null 2>&1 || missing+=("cargo")
if ! command -v python3 >/dev/null 2>&1; then
  missing+=("python3")
elif ! python3 -c 'import kubernetes_validate, yaml, jsonschema, celpy, promql_parser' 2>/dev/null; then
  missing+=("Python packages kubernetes-validate, cel-python, promql-parser (pip install -r tests/requirements.txt)")
fi
[ -d ../../shared/conformance ] || missing+=("../shared/conformance beside the checkout ($(cd ../.. && pwd)/shared)")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deploy/validate.sh: cannot validate, missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

# The binaries whose --help the flag check reads (the tests build the same ones).
cargo build -q -p promdrop-exporter -p promdrop-cli
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
export PROMDROP_EXPORTER_BIN="$target/debug/promdrop-exporter" PROMDROP_BIN="$target/debug/promdrop"

echo "deploy/validate.sh: $(kubectl version --client 2>/dev/null | head -2 | tr '\n' ' ')"
echo "deploy/validate.sh: $(promtool --version 2>&1 | head -1), kubernetes-validate $(python3 -c 'import kubernetes_validate; print(kubernetes_validate.version.__version__)' 2>/dev/null || echo '?')"
exec python3 -m validate
