"""Renders every overlay, component variant and example with `kubectl kustomize`, and the
helpers that read rendered objects (pod templates, containers, objects by kind)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from .report import fail, ok, run, say

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
# CI and the developers' machines keep shared/ beside the checkout.
SHARED = ROOT.parent / "shared"

# name -> (directory, components to add, drop the overlay's own components)
VARIANTS = {
    "daemonset-hostpath": ("overlays/daemonset-hostpath", [], False),
    "daemonset-hostpath+podmonitor": ("overlays/daemonset-hostpath", ["components/podmonitor"], False),
    "daemonset-hostpath-no-operator": ("overlays/daemonset-hostpath", [], True),
    "deployment-pvc": ("overlays/deployment-pvc", [], False),
    "deployment-pvc+podmonitor": ("overlays/deployment-pvc", ["components/podmonitor"], False),
    "deployment-pvc-no-operator": ("overlays/deployment-pvc", [], True),
    "examples/pvc": ("examples/pvc", [], False),
    "examples/hostpath": ("examples/hostpath", [], False),
}


def kustomize_dir(path: Path, tmp: Path, name: str, extra: list[str], drop_components: bool) -> Path:
    """The directory to render: the overlay itself, or a copy of its kustomization in `tmp`
    with its components dropped or more added."""
    if not extra and not drop_components:
        return path
    out = tmp / name.replace("/", "_")
    out.mkdir()

    # kustomize refuses absolute paths to directories: paths relative to the copy.
    def rel(p: Path) -> str:
        return os.path.relpath(p.resolve(), out)

    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    for key in ("resources", "components"):
        if key in k:
            k[key] = [rel(path / p) for p in k[key]]
    for patch in k.get("patches", []):
        if "path" in patch:
            patch["path"] = rel(path / patch["path"])
    if drop_components:
        # Only the Prometheus Operator's component: the others are not about the Operator.
        k["components"] = [c for c in k.get("components", []) if not c.endswith("prometheus-operator")]
    k.setdefault("components", []).extend(rel(DEPLOY / c) for c in extra)
    if not k["components"]:
        del k["components"]
    (out / "kustomization.yaml").write_text(yaml.safe_dump(k))
    return out


def kustomize(directory: Path) -> tuple[list[dict] | None, str]:
    """`kubectl kustomize` of one directory: (objects, "") or (None, the error)."""
    r = run(["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(directory)])
    if r.returncode != 0:
        return None, r.stderr.strip()
    return [x for x in yaml.safe_load_all(r.stdout) if x], ""


def render_all() -> dict[str, list[dict]]:
    """Every variant rendered: name -> its objects. A variant that does not build fails."""
    rendered = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name, (rel, extra, drop) in VARIANTS.items():
            docs, err = kustomize(kustomize_dir(DEPLOY / rel, tmp, name, extra, drop))
            if docs is None:
                fail(f"kubectl kustomize {name}: {err}")
                continue
            rendered[name] = docs
            ok("kustomize builds")
            ok("objects rendered", len(docs))
            say(f"kustomize {name}: {len(docs)} objects ({', '.join(sorted({o['kind'] for o in docs}))})")
    return rendered


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    """The objects of one kind."""
    return [o for o in docs if o.get("kind") == kind]


def pod_template(o: dict) -> dict | None:
    """The pod template (metadata and spec) of a workload, the pod itself for a Pod, else None."""
    kind = o.get("kind")
    if kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
        return o["spec"]["template"]
    if kind == "CronJob":
        return o["spec"]["jobTemplate"]["spec"]["template"]
    if kind == "Pod":
        return o
    return None


def pod_spec(o: dict) -> dict | None:
    """The pod spec of a workload (see pod_template)."""
    t = pod_template(o)
    return None if t is None else t["spec"]


def containers(o: dict) -> list[dict]:
    """Init and regular containers of a workload's pod template."""
    spec = pod_spec(o)
    if spec is None:
        return []
    return spec.get("initContainers", []) + spec.get("containers", [])


def name_of(o: dict) -> str:
    """Kind/name, for messages."""
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
