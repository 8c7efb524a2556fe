#!/usr/bin/env bash
# Validates deploy/, the Dockerfile and .dockerignore offline: kustomize builds, Kubernetes
# schemas, Pod Security, alert rules and their tests, the dashboard, the Dockerfile's paths.
# What each check does: deploy/validate.py. Needs kubectl, promtool and Python with the
# packages in tests/requirements.txt (kubernetes-validate, which brings PyYAML and jsonschema).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v kubectl >/dev/null 2>&1 || missing+=("kubectl (for kubectl kustomize)")
command -v promtool >/dev/null 2>&1 || missing+=("promtool (Debian package prometheus)")
if ! command -v python3 >/dev/null 2>&1; then
  missing+=("python3")
elif ! python3 -c 'import kubernetes_validate, yaml, jsonschema' 2>/dev/null; then
  missing+=("Python package kubernetes-validate (pip install -r tests/requirements.txt)")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deploy/validate.sh: cannot validate, missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

echo "deploy/validate.sh: $(kubectl version --client 2>/dev/null | head -2 | tr '\n' ' ')"
echo "deploy/validate.sh: $(promtool --version 2>&1 | head -1), kubernetes-validate $(python3 -c 'import kubernetes_validate; print(kubernetes_validate.version.__version__)' 2>/dev/null || echo '?')"
exec python3 validate.py
