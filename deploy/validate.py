#!/usr/bin/env python3
"""Offline validation of everything under deploy/, the Dockerfile and .dockerignore.

Run through deploy/validate.sh, which checks first that the tools are installed. Each check
prints one line; any failure is listed at the end and makes the exit status 1.

  1. kustomize: every overlay, every component variant and the examples render
     (kubectl kustomize).
  2. Kubernetes schemas: every rendered built-in object against the OpenAPI schemas bundled
     in the kubernetes-validate package (strict: unknown fields are errors), for two
     Kubernetes versions. The Prometheus Operator's objects (ServiceMonitor, PodMonitor,
     PrometheusRule) are not in those schemas: they are checked against the small JSON
     schemas below (the fields promdrop uses, unknown fields refused).
  3. Pod Security: each pod template against the level its namespace enforces (the
     "restricted" checks, or "baseline" plus exactly the documented exceptions), and the
     house rules (UID/GID 65532, resources, read-only exporter mount, the same exporter
     container in both modes, the NetworkPolicy on 9466).
  4. Rules: generate-rules.sh --check; promtool check rules on the plain file and on the rules
     extracted from the rendered PrometheusRule; the two equal; promtool test rules; the
     scrape config through promtool check config.
  5. Dashboard: valid JSON, a datasource variable used by every panel, every expr parses
     (promtool), and every metric name it reads is one promdrop or Prometheus provides.
  6. Dockerfile: every COPY source exists and survives .dockerignore, every workspace member
     is copied, the packages and binary names match the Cargo manifests.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
K8S_VERSIONS = ["1.30.0", "1.33.0"]
UID = 65532

failures: list[str] = []
counts: dict[str, int] = {}


def ok(what: str, n: int = 1) -> None:
    counts[what] = counts.get(what, 0) + n


def fail(message: str) -> None:
    failures.append(message)
    print(f"  FAIL {message}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------------------
# 1. kustomize

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
    with absolute paths, its components dropped or more added."""
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
        k.pop("components", None)
    k.setdefault("components", []).extend(rel(DEPLOY / c) for c in extra)
    if not k["components"]:
        del k["components"]
    (out / "kustomization.yaml").write_text(yaml.safe_dump(k))
    return out


def render_all() -> dict[str, list[dict]]:
    rendered = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name, (rel, extra, drop) in VARIANTS.items():
            d = kustomize_dir(DEPLOY / rel, tmp, name, extra, drop)
            r = run(["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(d)])
            if r.returncode != 0:
                fail(f"kubectl kustomize {name}: {r.stderr.strip()}")
                continue
            docs = [x for x in yaml.safe_load_all(r.stdout) if x]
            rendered[name] = docs
            ok("kustomize builds")
            ok("objects rendered", len(docs))
            print(f"  ok   kustomize {name}: {len(docs)} objects ({', '.join(sorted({o['kind'] for o in docs}))})")
    return rendered


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [o for o in docs if o.get("kind") == kind]


def variant_checks(r: dict[str, list[dict]]) -> None:
    """What each variant must (not) contain."""
    def kinds(name):
        return sorted(o["kind"] for o in r.get(name, []))

    for mode, workload in (("daemonset-hostpath", "DaemonSet"), ("deployment-pvc", "Deployment")):
        if mode not in r:
            continue
        expect = {
            mode: {"ServiceMonitor": 1, "PrometheusRule": 1, "PodMonitor": 0, workload: 1},
            f"{mode}+podmonitor": {"ServiceMonitor": 0, "PrometheusRule": 1, "PodMonitor": 1, workload: 1},
            f"{mode}-no-operator": {"ServiceMonitor": 0, "PrometheusRule": 0, "PodMonitor": 0, workload: 1},
        }
        for name, want in expect.items():
            got = kinds(name)
            for kind, n in want.items():
                if got.count(kind) != n:
                    fail(f"{name}: {got.count(kind)} {kind} (expected {n})")
                else:
                    ok("variant contents")
    for name, docs in r.items():
        if name.startswith("examples/"):
            continue
        for o in docs:
            if o["kind"] != "Namespace" and o["kind"] not in ("ClusterRole", "ClusterRoleBinding") \
                    and o["metadata"].get("namespace") != "promdrop":
                fail(f"{name}: {o['kind']}/{o['metadata']['name']} is not in namespace promdrop")
    for name, docs in r.items():
        for o in docs:
            for c in containers(o):
                if c.get("image") == "promdrop" or ":" not in c.get("image", ""):
                    fail(f"{name}: {o['kind']}/{o['metadata']['name']} container {c['name']}: image {c.get('image')!r} has no tag")
    pvc = r.get("examples/pvc", [])
    hp = r.get("examples/hostpath", [])
    for name, docs, want in (("examples/pvc", pvc, "persistentVolumeClaim"), ("examples/hostpath", hp, "hostPath")):
        for o in by_kind(docs, "CronJob"):
            vol = [v for v in pod_spec(o)["volumes"] if v["name"] == "promdrop"]
            if len(vol) != 1 or set(vol[0]) != {"name", want}:
                fail(f"{name}: CronJob/{o['metadata']['name']} volume promdrop is {vol}, expected {want} only")
            else:
                ok("variant contents")


# ---------------------------------------------------------------------------------------------
# 2. schemas

def relabel_schema():
    return {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "sourceLabels": {"type": "array", "items": {"type": "string"}},
                "separator": {"type": "string"},
                "targetLabel": {"type": "string"},
                "regex": {"type": "string"},
                "modulus": {"type": "integer"},
                "replacement": {"type": "string"},
                "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                                    "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                                    "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
                                    "dropequal", "DropEqual"]},
            },
        },
    }


DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "targetPort": {},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https"]},
        "interval": DURATION,
        "scrapeTimeout": DURATION,
        "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"},
        "tlsConfig": {"type": "object"},
        "basicAuth": {"type": "object"},
        "authorization": {"type": "object"},
        "relabelings": relabel_schema(),
        "metricRelabelings": relabel_schema(),
    },
    "anyOf": [{"required": ["port"]}, {"required": ["targetPort"]}],
}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def crd_schema(spec: dict) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"type": "string"},
            "metadata": METADATA,
            "spec": spec,
        },
    }


CRD_SCHEMAS = {
    "ServiceMonitor": crd_schema({
        "type": "object",
        "additionalProperties": False,
        "required": ["selector", "endpoints"],
        "properties": {
            "jobLabel": {"type": "string"},
            "selector": LABEL_SELECTOR,
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT},
        },
    }),
    "PodMonitor": crd_schema({
        "type": "object",
        "additionalProperties": False,
        "required": ["selector", "podMetricsEndpoints"],
        "properties": {
            "jobLabel": {"type": "string"},
            "selector": LABEL_SELECTOR,
            "namespaceSelector": {"type": "object"},
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": ENDPOINT},
        },
    }),
    "PrometheusRule": crd_schema({
        "type": "object",
        "additionalProperties": False,
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": DURATION,
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["expr"],
                                "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                "properties": {
                                    "alert": {"type": "string"},
                                    "record": {"type": "string"},
                                    "expr": {"type": "string", "minLength": 1},
                                    "for": DURATION,
                                    "keep_firing_for": DURATION,
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            },
        },
    }),
}


def validate_schemas(rendered: dict[str, list[dict]]) -> None:
    seen = set()
    for name, docs in rendered.items():
        for o in docs:
            key = json.dumps(o, sort_keys=True)
            if key in seen:  # the same object in several variants: validate once
                continue
            seen.add(key)
            what = f"{name}: {o.get('kind')}/{o.get('metadata', {}).get('name')}"
            if o.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                schema = CRD_SCHEMAS.get(o["kind"])
                if schema is None:
                    fail(f"{what}: no schema for this Prometheus Operator kind")
                    continue
                errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(o), key=str)
                for e in errors:
                    fail(f"{what}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
                if not errors:
                    ok("Operator objects checked against promdrop's CRD subset schemas")
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(o, version, strict=True)
                    ok(f"objects valid against Kubernetes {version} (strict)")
                except kubernetes_validate.ValidationError as e:
                    fail(f"{what}: Kubernetes {version}: {'/'.join(map(str, e.path))}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    fail(f"{what}: Kubernetes {version}: no schema ({e})")


# ---------------------------------------------------------------------------------------------
# 3. Pod Security and house rules

def pod_spec(o: dict) -> dict | None:
    kind = o.get("kind")
    if kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
        return o["spec"]["template"]["spec"]
    if kind == "CronJob":
        return o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return o["spec"]
    return None


def containers(o: dict) -> list[dict]:
    spec = pod_spec(o)
    if spec is None:
        return []
    return spec.get("initContainers", []) + spec.get("containers", [])


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def pss_violations(o: dict) -> tuple[list[str], list[str]]:
    """(baseline violations, restricted-only violations) of a pod template, following the Pod
    Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards)."""
    spec = pod_spec(o)
    base, restr = [], []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            base.append(f"{field}: true")
    psc = spec.get("securityContext", {})
    for s in psc.get("sysctls", []):
        base.append(f"sysctl {s['name']}")
    for v in spec.get("volumes", []):
        vtype = next(k for k in v if k != "name")
        if vtype == "hostPath":
            base.append(f"hostPath volume {v['name']}")
        elif vtype not in RESTRICTED_VOLUMES:
            restr.append(f"volume {v['name']} of type {vtype}")
    pod_nonroot = psc.get("runAsNonRoot")
    pod_seccomp = psc.get("seccompProfile", {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        base.append(f"pod seccompProfile {pod_seccomp}")
    if psc.get("runAsUser") == 0:
        restr.append("pod runAsUser 0")
    for c in containers(o):
        sc = c.get("securityContext", {})
        who = f"container {c['name']}"
        if sc.get("privileged"):
            base.append(f"{who}: privileged")
        for p in c.get("ports", []):
            if p.get("hostPort"):
                base.append(f"{who}: hostPort {p['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            base.append(f"{who}: procMount")
        add = set(sc.get("capabilities", {}).get("add", []))
        if add - BASELINE_CAPS:
            base.append(f"{who}: adds capabilities {sorted(add - BASELINE_CAPS)}")
        if add - {"NET_BIND_SERVICE"}:
            restr.append(f"{who}: adds capabilities {sorted(add - {'NET_BIND_SERVICE'})}")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            restr.append(f"{who}: does not drop ALL capabilities")
        if sc.get("allowPrivilegeEscalation") is not False:
            restr.append(f"{who}: allowPrivilegeEscalation is not false")
        nonroot = sc.get("runAsNonRoot", pod_nonroot)
        if nonroot is not True:
            restr.append(f"{who}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            restr.append(f"{who}: runAsUser 0")
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            restr.append(f"{who}: seccompProfile is {seccomp}")
    return base, restr


# Deviations from "restricted" that a namespace enforcing "baseline" is for, by variant.
# Anything else fails.
HOSTPATH_EXCEPTIONS = {
    "DaemonSet/promdrop-exporter": {
        "hostPath volume textfiles",
        "container prepare-dir: adds capabilities ['CHOWN', 'FOWNER']",
        "container prepare-dir: runAsNonRoot is not true",
        "container prepare-dir: runAsUser 0",
    },
    "CronJob/nightly-report": {"hostPath volume promdrop"},
    "CronJob/descheduler": {"hostPath volume promdrop"},
}


def enforced_level(docs: list[dict], name: str) -> str:
    ns = by_kind(docs, "Namespace")
    if ns:
        return ns[0]["metadata"]["labels"].get("pod-security.kubernetes.io/enforce", "privileged")
    # The examples do not create the namespace: the overlay of their mode does.
    return "baseline" if name == "examples/hostpath" else "restricted"


def pod_security(rendered: dict[str, list[dict]]) -> None:
    for name, docs in rendered.items():
        level = enforced_level(docs, name)
        for ns in by_kind(docs, "Namespace"):
            labels = ns["metadata"].get("labels", {})
            for mode in ("audit", "warn"):
                if labels.get(f"pod-security.kubernetes.io/{mode}") != "restricted":
                    fail(f"{name}: namespace {mode} level is not restricted")
            want = "baseline" if name.startswith("daemonset-hostpath") else "restricted"
            if level != want:
                fail(f"{name}: namespace enforces {level}, expected {want}")
        for o in docs:
            if pod_spec(o) is None:
                continue
            what = f"{o['kind']}/{o['metadata']['name']}"
            base, restr = pss_violations(o)
            if level == "restricted":
                problems = base + restr
            else:
                # "baseline" is enforced only for the documented exceptions: everything else
                # must still meet "restricted".
                allowed = HOSTPATH_EXCEPTIONS.get(what, set())
                problems = [p for p in base + restr if p not in allowed]
                missing = allowed - set(base + restr)
                if missing:
                    fail(f"{name}: {what}: documented exceptions not present any more, update validate.py: {sorted(missing)}")
            for p in problems:
                fail(f"{name}: {what} violates Pod Security {'baseline' if p in base else 'restricted'}: {p}")
            if not problems:
                ok(f"pod templates meeting their namespace's Pod Security level")
            house_rules(name, o)


def house_rules(name: str, o: dict) -> None:
    what = f"{name}: {o['kind']}/{o['metadata']['name']}"
    spec = pod_spec(o)
    psc = spec.get("securityContext", {})
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        if psc.get(field) != UID:
            fail(f"{what}: pod securityContext.{field} is {psc.get(field)}, expected {UID}")
    for c in containers(o):
        sc = c.get("securityContext", {})
        who = f"{what} container {c['name']}"
        res = c.get("resources", {})
        if "memory" not in res.get("requests", {}) or "cpu" not in res.get("requests", {}) \
                or "memory" not in res.get("limits", {}):
            fail(f"{who}: needs cpu and memory requests and a memory limit")
        if c["name"] == "prepare-dir":
            continue
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{who}: readOnlyRootFilesystem is not true")
        if sc.get("runAsUser", psc.get("runAsUser")) != UID or sc.get("runAsGroup", psc.get("runAsGroup")) != UID:
            fail(f"{who}: does not run as {UID}:{UID}")
    ok("pod templates meeting the house rules")


def exporter_checks(rendered: dict[str, list[dict]]) -> None:
    exporters = {}
    for name in ("daemonset-hostpath", "deployment-pvc"):
        for o in rendered.get(name, []):
            if o["kind"] in ("DaemonSet", "Deployment"):
                exporters[name] = o
    for name, o in exporters.items():
        c = next(c for c in pod_spec(o)["containers"] if c["name"] == "exporter")
        args = c.get("args", [])
        mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == "/var/lib/promdrop"), None)
        deleting = any(a.startswith("--delete-after") and not a.endswith(("=off", "=0")) for a in args)
        if mount is None:
            fail(f"{name}: the exporter does not mount /var/lib/promdrop")
        elif deleting != (mount.get("readOnly") is not True):
            fail(f"{name}: the exporter's mount must be read-only unless --delete-after is set (readOnly={mount.get('readOnly')}, args={args})")
        if "--textfile.directory=/var/lib/promdrop" not in args:
            fail(f"{name}: the exporter is not given --textfile.directory=/var/lib/promdrop")
        port = [p for p in c.get("ports", []) if p.get("name") == "metrics"]
        if [p.get("containerPort") for p in port] != [9466]:
            fail(f"{name}: the exporter's metrics port is not 9466")
        ok("exporter workload checks")
    # The exporter container is written twice (DaemonSet and Deployment): the same but for
    # the rescan interval.
    if len(exporters) == 2:
        def comparable(o):
            c = copy.deepcopy(next(c for c in pod_spec(o)["containers"] if c["name"] == "exporter"))
            c["args"] = [a for a in c.get("args", []) if not a.startswith("--rescan-interval")]
            psc = copy.deepcopy(pod_spec(o)["securityContext"])
            psc.pop("fsGroupChangePolicy", None)
            return c, psc
        a, b = (comparable(o) for o in exporters.values())
        if a != b:
            fail(f"the exporter container or pod securityContext differ between the DaemonSet and the Deployment:\n{a}\n{b}")
        else:
            ok("exporter workload checks")
        pvc_args = next(c for c in pod_spec(exporters["deployment-pvc"])["containers"])["args"]
        if "--rescan-interval=10s" not in pvc_args:
            fail("deployment-pvc: the exporter should rescan every 10s (NFS)")
        if exporters["deployment-pvc"]["spec"].get("replicas") != 2:
            fail("deployment-pvc: 2 replicas expected")
        hp = [v for v in pod_spec(exporters["daemonset-hostpath"])["volumes"] if "hostPath" in v]
        if [v["hostPath"] for v in hp] != [{"path": "/var/lib/promdrop", "type": "DirectoryOrCreate"}]:
            fail(f"daemonset-hostpath: hostPath volume is {hp}")
    for name, docs in rendered.items():
        for np in by_kind(docs, "NetworkPolicy"):
            ingress = np["spec"].get("ingress", [])
            ports = [p.get("port") for rule in ingress for p in rule.get("ports", [])]
            sources = [f for rule in ingress for f in rule.get("from", [])]
            if ports != ["metrics"] or not sources or any("podSelector" not in f or "namespaceSelector" not in f for f in sources):
                fail(f"{name}: NetworkPolicy must admit only the metrics port from Prometheus pods in its namespace ({ingress})")
            else:
                ok("NetworkPolicy checks")
        for svc in by_kind(docs, "Service"):
            if [p["port"] for p in svc["spec"]["ports"]] != [9466]:
                fail(f"{name}: Service ports {svc['spec']['ports']}")


# ---------------------------------------------------------------------------------------------
# 4. rules

RULES = DEPLOY / "prometheus" / "promdrop.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "promdrop.rules.test.yml"


def promtool(args: list[str], what: str) -> bool:
    r = run(["promtool", *args])
    if r.returncode != 0:
        fail(f"{what}: promtool {' '.join(args)}:\n{r.stdout}{r.stderr}")
        return False
    return True


def rules_checks(rendered: dict[str, list[dict]]) -> None:
    r = run([str(DEPLOY / "generate-rules.sh"), "--check"])
    if r.returncode != 0:
        fail(f"PrometheusRule out of date with the rules file:\n{r.stderr}")
    else:
        ok("rule files checked")
        print("  ok   generate-rules.sh --check: the PrometheusRule matches promdrop.rules.yml")
    if promtool(["check", "rules", str(RULES)], "plain rules file"):
        ok("rule files checked")
    plain = yaml.safe_load(RULES.read_text())
    n_rules = sum(len(g["rules"]) for g in plain["groups"])
    n_alerts = sum(1 for g in plain["groups"] for x in g["rules"] if "alert" in x)
    ok("rules", n_rules)
    ok("alerts", n_alerts)
    with tempfile.TemporaryDirectory() as t:
        for name, docs in rendered.items():
            for pr in by_kind(docs, "PrometheusRule"):
                path = Path(t) / f"{name.replace('/', '_')}.rules.yml"
                path.write_text(yaml.safe_dump({"groups": pr["spec"]["groups"]}))
                if promtool(["check", "rules", str(path)], f"{name}: PrometheusRule"):
                    ok("rule files checked")
                if pr["spec"]["groups"] != plain["groups"]:
                    fail(f"{name}: the PrometheusRule's groups differ from {RULES.name}")
    for g in plain["groups"]:
        for rule in g["rules"]:
            if "alert" not in rule:
                continue
            ann = rule.get("annotations", {})
            missing = {"summary", "description", "runbook_url"} - set(ann)
            if missing:
                fail(f"alert {rule['alert']}: missing annotations {sorted(missing)}")
            url = ann.get("runbook_url", "")
            if not re.fullmatch(r"https://\S+/docs/OPERATIONS\.md#" + rule["alert"].lower(), url):
                fail(f"alert {rule['alert']}: runbook_url {url!r} is not docs/OPERATIONS.md#{rule['alert'].lower()}")
            if "severity" not in rule.get("labels", {}):
                fail(f"alert {rule['alert']}: no severity label")
    # Every alert is tested.
    tests = yaml.safe_load(RULES_TEST.read_text())
    tested_firing = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    tested_silent = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", []) if not a.get("exp_alerts")}
    for g in plain["groups"]:
        for rule in g["rules"]:
            if "alert" in rule and rule["alert"] not in tested_firing:
                fail(f"alert {rule['alert']}: no test in {RULES_TEST.name} where it fires")
            if "alert" in rule and rule["alert"] not in tested_silent:
                fail(f"alert {rule['alert']}: no test in {RULES_TEST.name} where it stays silent")
    r = run(["promtool", "test", "rules", str(RULES_TEST)], cwd=RULES_TEST.parent)
    if r.returncode != 0:
        fail(f"promtool test rules:\n{r.stdout}{r.stderr}")
    else:
        n = sum(len(t.get("alert_rule_test", [])) + len(t.get("promql_expr_test", [])) for t in tests["tests"])
        ok("rule unit test cases passed", n)
        print(f"  ok   promtool test rules: {n} cases in {len(tests['tests'])} groups")
    scrape_config_check()


def scrape_config_check() -> None:
    """promtool check config on the scrape config. Debian's Prometheus is built without the
    Kubernetes service discovery, so kubernetes_sd_configs are checked here and swapped for a
    static target for promtool, which then checks the rest (relabelling, durations)."""
    path = DEPLOY / "prometheus" / "scrape-config.yaml"
    cfg = yaml.safe_load(path.read_text())
    for job in cfg["scrape_configs"]:
        if job.get("honor_labels"):
            fail(f"{path.name}: job {job['job_name']}: honor_labels is not needed")
        for sd in job.pop("kubernetes_sd_configs", []):
            if sd.get("role") not in ("endpoints", "endpointslice", "pod", "service"):
                fail(f"{path.name}: kubernetes_sd_configs role {sd.get('role')!r}")
            if set(sd) - {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}:
                fail(f"{path.name}: unknown kubernetes_sd_configs fields {set(sd)}")
        job["static_configs"] = [{"targets": ["127.0.0.1:9466"]}]
    cfg["rule_files"] = [str(RULES)]
    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / "prometheus.yml"
        p.write_text(yaml.safe_dump(cfg))
        if promtool(["check", "config", str(p)], f"{path.name}"):
            ok("scrape configs checked")
            print(f"  ok   promtool check config: {path.name} (kubernetes_sd_configs swapped for a static target)")


# ---------------------------------------------------------------------------------------------
# 5. dashboard

DASHBOARD = DEPLOY / "grafana" / "promdrop-dashboard.json"
KNOWN_METRICS = {
    # exporter
    "promdrop_file_mtime_seconds", "promdrop_file_stale", "promdrop_file_expired", "promdrop_file_error",
    "promdrop_file_series", "promdrop_file_bytes", "promdrop_files", "promdrop_conflicts_total",
    "promdrop_reloads_total", "promdrop_build_info", "node_textfile_mtime_seconds", "node_textfile_scrape_error",
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
PROMQL_FUNCTIONS_AND_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "atan2", "start", "end",
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: strings, label matchers, ranges, grouping
    clauses, Grafana variables and function calls removed first."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\$\{[^}]*\}|\$\w+", "1", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_FUNCTIONS_AND_KEYWORDS:
            continue
        names.add(word)
    return names


def metric_name_selftest() -> None:
    cases = {
        'sum by (state) (promdrop_files{job=~"$job"})': {"promdrop_files"},
        'rate(process_cpu_seconds_total{a="b{c}"}[$__rate_interval]) * on (x, y) group_left () up offset 5m': {"process_cpu_seconds_total", "up"},
        'time() - max by (job_name) (promdrop_job_last_success_timestamp_seconds) > 1e3': {"promdrop_job_last_success_timestamp_seconds"},
        'label_values(promdrop_build_info{job=~"$job"}, instance)': {"promdrop_build_info", "instance"},
        'sum(node_cpu_seconds_total) / ignoring(cpu) bogus_metric': {"node_cpu_seconds_total", "bogus_metric"},
    }
    for expr, want in cases.items():
        got = metric_names(expr)
        if got != want:
            fail(f"metric_names self-test: {expr!r} gave {sorted(got)}, expected {sorted(want)}")


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard_checks() -> None:
    metric_name_selftest()
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
    exprs = []
    for v in variables.values():
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            exprs.append((f"variable {v['name']}", re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", q), q))
            if v.get("datasource", {}).get("uid") != ds_ref:
                fail(f"{DASHBOARD.name}: variable {v['name']} does not use the {ds_ref} data source")
    n_panels = 0
    for p in walk_panels(dash.get("panels", [])):
        if p.get("type") == "row":
            continue
        n_panels += 1
        if p.get("datasource", {}).get("uid") != ds_ref:
            fail(f"{DASHBOARD.name}: panel {p.get('title')!r} does not use the {ds_ref} data source")
        if not p.get("targets"):
            fail(f"{DASHBOARD.name}: panel {p.get('title')!r} has no query")
        for t in p.get("targets", []):
            exprs.append((f"panel {p.get('title')!r}", t.get("expr", ""), t.get("expr", "")))
            if t.get("datasource", {}).get("uid") != ds_ref:
                fail(f"{DASHBOARD.name}: a query of panel {p.get('title')!r} does not use {ds_ref}")
    ids = [p.get("id") for p in walk_panels(dash.get("panels", []))]
    if len(ids) != len(set(ids)):
        fail(f"{DASHBOARD.name}: panel ids are not unique")
    unknown = {}
    for where, expr, _ in exprs:
        if not expr.strip():
            fail(f"{DASHBOARD.name}: {where}: empty expr")
        for name in metric_names(expr):
            if name not in KNOWN_METRICS and not name.startswith(KNOWN_PREFIXES):
                unknown.setdefault(name, []).append(where)
    for name, where in sorted(unknown.items()):
        fail(f"{DASHBOARD.name}: unknown metric {name!r} (not exported by promdrop) in {', '.join(sorted(set(where)))}")
    # Every expr parses: promtool check rules on them as recording rules, Grafana's variables
    # replaced by values.
    rules = []
    for i, (where, expr, _) in enumerate(exprs):
        e = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
        e = re.sub(r"\$\{?(\w+)\}?", ".+", e)
        rules.append({"record": f"dashboard:expr:{i}", "expr": e})
    with tempfile.TemporaryDirectory() as t:
        path = Path(t) / "dashboard.rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        if promtool(["check", "rules", str(path)], f"{DASHBOARD.name} queries"):
            ok("dashboard queries parsed by promtool", len(rules))
    ok("dashboard panels", n_panels)
    ok("dashboard metric names checked", len({n for _, e, _ in exprs for n in metric_names(e)}))
    print(f"  ok   dashboard: {n_panels} panels, {len(exprs)} queries, data source variable {ds_ref}")


# ---------------------------------------------------------------------------------------------
# 6. Dockerfile

def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore lets `path` (relative) into the build context: the last
    matching pattern wins, a pattern matching a parent directory applies to its contents."""
    import fnmatch
    allowed = True
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        hit = any(fnmatch.fnmatch(pre, p) or (p.startswith("**/") and fnmatch.fnmatch(pre.split("/")[-1], p[3:]))
                  for pre in prefixes)
        if hit:
            allowed = neg
    return allowed


def dockerfile_checks() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignore = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    lines = re.sub(r"\\\n", " ", dockerfile).splitlines()
    n_copy = 0
    for line in lines:
        m = re.match(r"\s*COPY\s+(.*)", line)
        if not m:
            continue
        args = m.group(1).split()
        if any(a.startswith("--from") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        for src in args[:-1]:
            n_copy += 1
            if not (ROOT / src).exists():
                fail(f"Dockerfile: COPY source {src} does not exist")
            elif not dockerignore_allows(src.rstrip("/"), ignore):
                fail(f"Dockerfile: COPY source {src} is excluded by .dockerignore")
    ok("Dockerfile COPY sources exist", n_copy)
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
    copied = [a for line in lines if re.match(r"\s*COPY\s", line) and "--from" not in line for a in line.split()[1:-1]]
    for member in workspace["members"]:
        if not any(member == c.rstrip("/") or member.startswith(c.rstrip("/") + "/") for c in copied):
            fail(f"Dockerfile: workspace member {member} is not copied (cargo needs every member's manifest)")
    packages = {}
    for member in workspace["members"]:
        manifest = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
        bins = [b["name"] for b in manifest.get("bin", [])] or [manifest["package"]["name"]]
        packages[manifest["package"]["name"]] = bins
    built = re.findall(r"-p\s+(\S+)", dockerfile)
    if sorted(built) != ["promdrop-cli", "promdrop-exporter"]:
        fail(f"Dockerfile: builds packages {built}, expected promdrop-cli and promdrop-exporter")
    for pkg, binary in (("promdrop-cli", "promdrop"), ("promdrop-exporter", "promdrop-exporter")):
        if pkg not in packages:
            fail(f"Dockerfile: package {pkg} is not a workspace member")
        elif binary not in packages[pkg]:
            fail(f"Dockerfile: package {pkg} has binaries {packages[pkg]}, not {binary}")
        if f'release/{binary}"' not in dockerfile and f"release/{binary} " not in dockerfile:
            fail(f"Dockerfile: does not copy the {binary} binary out of the build")
    checks = {
        "USER 65532:65532": r"^USER 65532:65532$",
        "EXPOSE 9466": r"^EXPOSE 9466$",
        "ENTRYPOINT the exporter": r'^ENTRYPOINT \["/usr/local/bin/promdrop-exporter"\]$',
        "builder rust:1-bookworm": r"^FROM rust:1-bookworm AS builder$",
    }
    for what, pattern in checks.items():
        if not re.search(pattern, dockerfile, re.M):
            fail(f"Dockerfile: {what} missing")
    # The manifests run the binaries at the paths the image puts them.
    for rel in ("examples/pvc/shell-cronjob.yaml", "examples/pvc/descheduler-cronjob.yaml"):
        text = (DEPLOY / rel).read_text()
        if "/usr/local/bin/cp, /usr/local/bin/promdrop," not in text:
            fail(f"{rel}: the init container must copy /usr/local/bin/promdrop with /usr/local/bin/cp")
    if "/out/cp /usr/local/bin/cp" not in dockerfile or "/out/promdrop /out/promdrop-exporter /usr/local/bin/" not in dockerfile:
        fail("Dockerfile: the image must hold /usr/local/bin/{promdrop,promdrop-exporter,cp}")
    ok("Dockerfile checks")
    print(f"  ok   Dockerfile: {n_copy} COPY sources exist and pass .dockerignore; packages {sorted(built)} -> binaries promdrop, promdrop-exporter")


# ---------------------------------------------------------------------------------------------

def main() -> int:
    print("kustomize:")
    rendered = render_all()
    variant_checks(rendered)
    print("Kubernetes schemas:")
    validate_schemas(rendered)
    print("Pod Security and house rules:")
    pod_security(rendered)
    exporter_checks(rendered)
    print("rules:")
    rules_checks(rendered)
    print("dashboard:")
    dashboard_checks()
    print("Dockerfile:")
    dockerfile_checks()
    print()
    for what, n in counts.items():
        print(f"  {n:5d}  {what}")
    if failures:
        print(f"\ndeploy/validate: {len(failures)} FAILED:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print("\ndeploy/validate: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
