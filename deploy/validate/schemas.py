"""Schemas: every rendered built-in object against the Kubernetes OpenAPI schemas bundled in
kubernetes-validate (strict), and every Prometheus Operator object against the Operator's own
CRDs in ../shared/conformance/prometheus-operator-crds (their openAPIV3Schema, strict: a field
the CRD does not define is an error, as the API server would prune or refuse it)."""

from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate
import yaml

from .render import SHARED
from .report import fail, ok

K8S_VERSIONS = ["1.30.0", "1.33.0"]
CRD_DIR = SHARED / "conformance" / "prometheus-operator-crds"
METADATA_FIELDS = {"name", "namespace", "labels", "annotations"}


def strict(schema: dict) -> dict:
    """An openAPIV3Schema as JSON Schema with unknown fields refused: every object that lists
    its properties gets additionalProperties false (unless it preserves unknown fields)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


def load_crds() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict JSON schema, from the CRD files."""
    out = {}
    files = sorted(CRD_DIR.glob("*.yaml"))
    if not files:
        fail(f"no CRDs in {CRD_DIR} (shared/ must be beside the checkout)")
    for path in files:
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                out[(f"{group}/{v['name']}", kind)] = strict(v["schema"]["openAPIV3Schema"])
    return out


def check_crd_object(o: dict, schema: dict, what: str) -> bool:
    """One Operator object against its CRD schema; metadata as the API server takes it."""
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(o), key=str)
    for e in errors:
        fail(f"{what}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
    meta = o.get("metadata", {})
    if set(meta) - METADATA_FIELDS or not meta.get("name") or not meta.get("namespace"):
        fail(f"{what}: metadata {sorted(meta)}: expected name, namespace, labels, annotations")
        return False
    return not errors


def validate_schemas(rendered: dict[str, list[dict]]) -> None:
    crds = load_crds()
    seen = set()
    for name, docs in rendered.items():
        for o in docs:
            key = json.dumps(o, sort_keys=True)
            if key in seen:  # the same object in several variants: validate once
                continue
            seen.add(key)
            what = f"{name}: {o.get('kind')}/{o.get('metadata', {}).get('name')}"
            if o.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                schema = crds.get((o["apiVersion"], o["kind"]))
                if schema is None:
                    fail(f"{what}: no CRD for {o['apiVersion']} {o['kind']} in {CRD_DIR}")
                elif check_crd_object(o, schema, what):
                    ok("Operator objects valid against the Operator's CRDs (strict)")
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(o, version, strict=True)
                    ok(f"objects valid against Kubernetes {version} (strict)")
                except kubernetes_validate.ValidationError as e:
                    fail(f"{what}: Kubernetes {version}: {'/'.join(map(str, e.path))}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    fail(f"{what}: Kubernetes {version}: no schema ({e})")


def selftest() -> None:
    """The strict CRD check can fail: an unknown field and a wrong type are refused."""
    crds = load_crds()
    schema = crds.get(("monitoring.coreos.com/v1", "ServiceMonitor"))
    if schema is None:
        return
    good = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "x", "namespace": "y"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "metrics"}]}}
    v = jsonschema.Draft7Validator(schema)
    bad_field = copy.deepcopy(good)
    bad_field["spec"]["endpoints"][0]["portt"] = "metrics"
    bad_type = copy.deepcopy(good)
    bad_type["spec"]["endpoints"][0]["honorLabels"] = "yes"
    if list(v.iter_errors(good)):
        fail(f"CRD self-test: a minimal ServiceMonitor is refused: {[e.message for e in v.iter_errors(good)]}")
    elif not list(v.iter_errors(bad_field)) or not list(v.iter_errors(bad_type)):
        fail("CRD self-test: an unknown field or a wrong type passes the ServiceMonitor CRD schema")
    else:
        ok("CRD self-tests")
