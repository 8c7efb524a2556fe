"""What the rendered objects must be: the contents of each variant, Pod Security at the level
each namespace enforces, the house rules (UID/GID 65532, resources, read-only exporter mount),
the exporter container the same in both modes, and selectors that select what they mean to
(monitors to the Service and pods, Service and NetworkPolicy to the pods, PDB to the pods,
Prometheus's RoleBinding to the namespace the NetworkPolicy admits)."""

from __future__ import annotations

import copy

from . import podsecurity
from .render import by_kind, containers, name_of, pod_spec, pod_template
from .report import fail, ok, say

UID = 65532
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "ValidatingAdmissionPolicy",
                  "ValidatingAdmissionPolicyBinding"}
PSA = "pod-security.kubernetes.io/"
# The overlay each example runs with: its pods may run in a namespace the overlay creates (the
# examples of the PVC mode run in the PVC overlay's namespace).
NAMESPACE_FROM = {"examples/pvc": "deployment-pvc", "examples/hostpath": "daemonset-hostpath"}


def variant_checks(r: dict[str, list[dict]]) -> None:
    """What each variant must (not) contain."""
    def count(name, kind):
        return sum(1 for o in r.get(name, []) if o["kind"] == kind)

    for mode, workload in (("daemonset-hostpath", "DaemonSet"), ("deployment-pvc", "Deployment")):
        expect = {
            mode: {"ServiceMonitor": 1, "PrometheusRule": 1, "PodMonitor": 0, workload: 1},
            f"{mode}+podmonitor": {"ServiceMonitor": 0, "PrometheusRule": 1, "PodMonitor": 1, workload: 1},
            f"{mode}-no-operator": {"ServiceMonitor": 0, "PrometheusRule": 0, "PodMonitor": 0, workload: 1},
        }
        for name, want in expect.items():
            for kind, n in want.items():
                if count(name, kind) != n:
                    fail(f"{name}: {count(name, kind)} {kind} (expected {n})")
                else:
                    ok("variant contents")
    hp = r.get("daemonset-hostpath", [])
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        if count("daemonset-hostpath", kind) != 1:
            fail(f"daemonset-hostpath: {count('daemonset-hostpath', kind)} {kind} (expected 1)")
    for name, docs in r.items():
        if name.startswith("examples/"):
            continue
        for o in docs:
            if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != "promdrop":
                fail(f"{name}: {name_of(o)} is not in namespace promdrop")
    for name, docs in r.items():
        for o in docs:
            for c in containers(o):
                if c.get("image") == "promdrop" or ":" not in c.get("image", ""):
                    fail(f"{name}: {name_of(o)} container {c['name']}: image {c.get('image')!r} has no tag")
    for name, want in (("examples/pvc", "persistentVolumeClaim"), ("examples/hostpath", "hostPath")):
        for o in by_kind(r.get(name, []), "CronJob"):
            vol = [v for v in pod_spec(o)["volumes"] if v["name"] == "promdrop"]
            if len(vol) != 1 or set(vol[0]) != {"name", want}:
                fail(f"{name}: {name_of(o)} volume promdrop is {vol}, expected {want} only")
            else:
                ok("variant contents")
    if hp:
        ok("variant contents")


def namespaces(r: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """Per variant: namespace name -> its labels, from the Namespace objects it renders and
    those of the overlay it runs with."""
    out = {}
    for name, docs in r.items():
        src = r.get(NAMESPACE_FROM[name], []) + docs if name in NAMESPACE_FROM else docs
        out[name] = {ns["metadata"]["name"]: ns["metadata"].get("labels", {}) for ns in by_kind(src, "Namespace")}
    return out


def pod_security(r: dict[str, list[dict]]) -> None:
    """Each pod template against the level its namespace enforces (at its version), with no
    exception. A namespace that enforces "privileged" needs it for hostPath alone: its pods
    must meet "baseline" in every other respect, and warn and audit stay "restricted"."""
    ns_labels = namespaces(r)
    for name, docs in r.items():
        for ns in by_kind(docs, "Namespace"):
            labels = ns["metadata"].get("labels", {})
            for mode in ("audit", "warn"):
                if labels.get(f"{PSA}{mode}") != "restricted":
                    fail(f"{name}: namespace {ns['metadata']['name']}: {mode} level is not restricted")
        for o in docs:
            template = pod_template(o)
            if template is None:
                continue
            ns = o["metadata"].get("namespace")
            labels = ns_labels[name].get(ns)
            if labels is None:
                fail(f"{name}: {name_of(o)} runs in namespace {ns!r}, which no variant defines: its Pod Security level is unknown")
                continue
            level = labels.get(f"{PSA}enforce", "privileged")
            version = labels.get(f"{PSA}enforce-version", "latest")
            problems = podsecurity.violations(template["spec"], template.get("metadata"), level, version)
            for p in problems:
                fail(f"{name}: {name_of(o)} is refused by Pod Security {level} ({version}) in namespace {ns}: {p}")
            if not problems:
                ok("pod templates admitted at their namespace's Pod Security level")
            if level == "privileged":
                # What "privileged" is for: hostPath. Everything else meets baseline.
                rest = copy.deepcopy(template)
                rest["spec"]["volumes"] = [v for v in rest["spec"].get("volumes", []) if "hostPath" not in v]
                for p in podsecurity.violations(rest["spec"], rest.get("metadata"), "baseline", version):
                    fail(f"{name}: {name_of(o)} in privileged namespace {ns} breaks baseline beyond hostPath: {p}")
            warned = podsecurity.violations(template["spec"], template.get("metadata"),
                                            labels.get(f"{PSA}warn", "privileged"), labels.get(f"{PSA}warn-version", "latest"))
            if warned:
                say(f"{name}: {name_of(o)}: the API server warns (restricted): {'; '.join(warned)}")
            house_rules(name, o)


def house_rules(name: str, o: dict) -> None:
    what = f"{name}: {name_of(o)}"
    spec = pod_spec(o)
    psc = spec.get("securityContext", {})
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        if psc.get(field) != UID:
            fail(f"{what}: pod securityContext.{field} is {psc.get(field)}, expected {UID}")
    if spec.get("nodeSelector", {}).get("kubernetes.io/os") != "linux":
        fail(f"{what}: no nodeSelector kubernetes.io/os: linux")
    for c in containers(o):
        sc = c.get("securityContext", {})
        who = f"{what} container {c['name']}"
        res = c.get("resources", {})
        if "memory" not in res.get("requests", {}) or "cpu" not in res.get("requests", {}) \
                or "memory" not in res.get("limits", {}):
            fail(f"{who}: needs cpu and memory requests and a memory limit")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{who}: readOnlyRootFilesystem is not true")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            fail(f"{who}: does not drop ALL capabilities")
        root = sc.get("runAsUser", psc.get("runAsUser")) == 0
        if root:
            # Root only in an init container that adds nothing but CHOWN and FOWNER.
            if c not in spec.get("initContainers", []) or set(caps.get("add", [])) - {"CHOWN", "FOWNER"}:
                fail(f"{who}: runs as root outside an init container limited to CHOWN and FOWNER")
        elif sc.get("runAsUser", psc.get("runAsUser")) != UID or sc.get("runAsGroup", psc.get("runAsGroup")) != UID:
            fail(f"{who}: does not run as {UID}:{UID}")
    ok("pod templates meeting the house rules")


def exporter_checks(r: dict[str, list[dict]]) -> None:
    exporters = {}
    for name in ("daemonset-hostpath", "deployment-pvc"):
        for o in r.get(name, []):
            if o["kind"] in ("DaemonSet", "Deployment"):
                exporters[name] = o
    for name, o in exporters.items():
        spec = pod_spec(o)
        c = next(c for c in spec["containers"] if c["name"] == "exporter")
        args = c.get("args", [])
        mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == "/var/lib/promdrop"), None)
        deleting = any(a.startswith("--delete-after") and not a.endswith(("=off", "=0")) for a in args)
        if mount is None:
            fail(f"{name}: the exporter does not mount /var/lib/promdrop")
        elif deleting != (mount.get("readOnly") is not True):
            fail(f"{name}: the exporter's mount must be read-only unless --delete-after is set (readOnly={mount.get('readOnly')}, args={args})")
        for want in ("--textfile.directory=/var/lib/promdrop", "--textfile.tenancy"):
            if want not in args:
                fail(f"{name}: the exporter is not given {want}")
        port = [p for p in c.get("ports", []) if p.get("name") == "metrics"]
        if [p.get("containerPort") for p in port] != [9466]:
            fail(f"{name}: the exporter's metrics port is not 9466")
        if not spec.get("priorityClassName"):
            fail(f"{name}: the exporter has no priorityClassName")
        if o["spec"].get("updateStrategy", o["spec"].get("strategy", {})).get("rollingUpdate", {}).get("maxUnavailable") is None:
            fail(f"{name}: the exporter's rolling update sets no maxUnavailable")
        ok("exporter workload checks")
    # The exporter container is written twice (DaemonSet and Deployment): the same but for
    # the rescan interval and the expiry of copies left on other nodes.
    if len(exporters) == 2:
        def comparable(o):
            c = copy.deepcopy(next(c for c in pod_spec(o)["containers"] if c["name"] == "exporter"))
            c["args"] = [a for a in c.get("args", []) if not a.startswith(("--rescan-interval", "--expire-after"))]
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
        hp_args = next(c for c in pod_spec(exporters["daemonset-hostpath"])["containers"])["args"]
        if not any(a.startswith("--expire-after=") and not a.endswith("=off") for a in hp_args):
            fail("daemonset-hostpath: no default --expire-after (copies left on other nodes would be served for ever)")
        hp = [v for v in pod_spec(exporters["daemonset-hostpath"])["volumes"] if "hostPath" in v]
        if [v["hostPath"] for v in hp] != [{"path": "/var/lib/promdrop", "type": "DirectoryOrCreate"}]:
            fail(f"daemonset-hostpath: hostPath volume is {hp}")
    for name, docs in r.items():
        for np in by_kind(docs, "NetworkPolicy"):
            ingress = np["spec"].get("ingress", [])
            ports = [p.get("port") for rule in ingress for p in rule.get("ports", [])]
            sources = [f for rule in ingress for f in rule.get("from", [])]
            if set(ports) != {"metrics"} or not sources or any("podSelector" not in f or "namespaceSelector" not in f for f in sources):
                fail(f"{name}: NetworkPolicy must admit only the metrics port from Prometheus pods in named namespaces ({ingress})")
            else:
                ok("NetworkPolicy checks")
        for svc in by_kind(docs, "Service"):
            if [p["port"] for p in svc["spec"]["ports"]] != [9466]:
                fail(f"{name}: Service ports {svc['spec']['ports']}")


def matches(selector: dict | None, labels: dict) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects `labels`. An empty
    selector selects everything, as in the API."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(k) not in values:
            return False
        if op == "NotIn" and k in labels and labels[k] in values:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def selector_checks(r: dict[str, list[dict]]) -> None:
    """Every selector selects what it is for, in the same namespace, and named ports exist."""
    for name, docs in r.items():
        pods = [(o, pod_template(o)) for o in docs if pod_template(o) is not None]
        exporter_pods = [(o, t) for o, t in pods if o["kind"] in ("DaemonSet", "Deployment")]

        def pods_selected(selector, ns):
            return [(o, t) for o, t in exporter_pods
                    if o["metadata"].get("namespace") == ns and matches(selector, t["metadata"].get("labels", {}))]

        def port_names(selected):
            return {p.get("name") for _, t in selected for c in t["spec"]["containers"] for p in c.get("ports", [])}

        for o, t in pods:
            if o["kind"] in ("DaemonSet", "Deployment") and not matches(o["spec"]["selector"], t["metadata"].get("labels", {})):
                fail(f"{name}: {name_of(o)}: its selector does not select its own pod template")
        services = by_kind(docs, "Service")
        for svc in services:
            sel = pods_selected({"matchLabels": svc["spec"].get("selector", {})}, svc["metadata"]["namespace"])
            if not sel:
                fail(f"{name}: {name_of(svc)} selects no exporter pod")
            for p in svc["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in port_names(sel):
                    fail(f"{name}: {name_of(svc)} targetPort {p['targetPort']} is no port of the pods it selects")
            ok("selectors checked")
        for sm in by_kind(docs, "ServiceMonitor"):
            ns_sel = sm["spec"].get("namespaceSelector", {})
            nss = ns_sel.get("matchNames") or [sm["metadata"]["namespace"]]
            hit = [s for s in services if s["metadata"]["namespace"] in nss
                   and matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
            if not hit:
                fail(f"{name}: {name_of(sm)} selects no Service")
            for ep in sm["spec"]["endpoints"]:
                if ep.get("port") and ep["port"] not in {p.get("name") for s in hit for p in s["spec"]["ports"]}:
                    fail(f"{name}: {name_of(sm)} endpoint port {ep['port']} is no port of the Services it selects")
            ok("selectors checked")
        def pods_and_ports(o, selector, ports, verb):
            """`o` selects exporter pods, and each named port is one of theirs."""
            sel = pods_selected(selector, o["metadata"]["namespace"])
            if not sel:
                fail(f"{name}: {name_of(o)} {verb} no exporter pod")
            for port in ports:
                if isinstance(port, str) and port not in port_names(sel):
                    fail(f"{name}: {name_of(o)} port {port} is no port of the pods it {verb}")
            ok("selectors checked")

        for pm in by_kind(docs, "PodMonitor"):
            pods_and_ports(pm, pm["spec"]["selector"], [ep.get("port") for ep in pm["spec"]["podMetricsEndpoints"]], "selects")
        for np in by_kind(docs, "NetworkPolicy"):
            ports = [p.get("port") for rule in np["spec"].get("ingress", []) for p in rule.get("ports", [])]
            pods_and_ports(np, np["spec"]["podSelector"], ports, "applies to")
        for pdb in by_kind(docs, "PodDisruptionBudget"):
            if not pods_selected(pdb["spec"]["selector"], pdb["metadata"]["namespace"]):
                fail(f"{name}: {name_of(pdb)} selects no exporter pod")
            ok("selectors checked")
        # Prometheus's discovery RBAC is for the namespace the NetworkPolicy admits it from.
        admitted = {f["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
                    for np in by_kind(docs, "NetworkPolicy") for rule in np["spec"].get("ingress", [])
                    for f in rule.get("from", []) if "namespaceSelector" in f}
        for rb in by_kind(docs, "RoleBinding"):
            for s in rb.get("subjects", []):
                if s.get("kind") == "ServiceAccount" and admitted and s.get("namespace") not in admitted:
                    fail(f"{name}: {name_of(rb)} grants discovery to {s.get('namespace')}/{s.get('name')}, "
                         f"but the NetworkPolicy admits Prometheus only from {sorted(admitted)}")
            roles = {ro["metadata"]["name"] for ro in by_kind(docs, "Role")}
            if rb["roleRef"]["kind"] == "Role" and rb["roleRef"]["name"] not in roles:
                fail(f"{name}: {name_of(rb)} refers to Role {rb['roleRef']['name']}, which is not rendered")
            ok("selectors checked")


def selftest() -> None:
    """The selector matcher can say no."""
    cases = [
        ({"matchLabels": {"a": "b"}}, {"a": "b", "c": "d"}, True),
        ({"matchLabels": {"a": "b"}}, {"a": "c"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}, {"a": "y"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "y"}, False),
        ({}, {"a": "y"}, True),
    ]
    for sel, labels, want in cases:
        if matches(sel, labels) != want:
            fail(f"selector self-test: {sel} on {labels} gave {not want}")
    ok("selector self-tests")
