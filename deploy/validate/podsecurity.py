"""The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards),
as the API server's Pod Security admission plugin (k8s.io/pod-security-admission, its
policy/check_*.go) applies them, per level and policy version.

`violations(pod_spec, metadata, level, version)` lists what a pod template breaks at a level
("privileged", "baseline" or "restricted") and a version ("v1.32", "latest", ...). Each check
below is one of the plugin's checks, with the version from which it applies. The upstream
admission fixtures in ../shared/conformance/pod-security are the test (conformance.py): every
pod there must get the verdict of its folder.
"""

from __future__ import annotations

import re

LEVELS = ("privileged", "baseline", "restricted")
LATEST = (1, 35)

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Safe sysctls, by the policy version that allowed them.
SYSCTLS = [
    ((1, 0), {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
              "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}),
    ((1, 27), {"net.ipv4.ip_local_reserved_ports"}),
    ((1, 29), {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
               "net.ipv4.tcp_keepalive_probes"}),
    ((1, 32), {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}),
]
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def parse_version(version: str) -> tuple[int, int]:
    """"v1.32" or "1.32" -> (1, 32); "latest" -> the newest version these checks know."""
    if version == "latest":
        return LATEST
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", version)
    if not m:
        raise ValueError(f"Pod Security version {version!r}: expected latest or v1.N")
    return int(m.group(1)), int(m.group(2))


def all_containers(spec: dict) -> list[dict]:
    """Init, regular and ephemeral containers: the plugin checks all three."""
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or []), *(spec.get("ephemeralContainers") or [])]


def _sc(x: dict) -> dict:
    return x.get("securityContext") or {}


def _baseline(spec: dict, metadata: dict, v: tuple[int, int]) -> list[str]:
    out = []
    psc = _sc(spec)
    containers = all_containers(spec)
    # privileged
    for c in containers:
        if _sc(c).get("privileged") is True:
            out.append(f"privileged: container {c['name']} is privileged")
    # hostNamespaces
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            out.append(f"host namespaces: {field}=true")
    # hostPathVolumes
    for vol in spec.get("volumes") or []:
        if vol.get("hostPath") is not None:
            out.append(f"hostPath volumes: volume {vol['name']} is a hostPath")
    # hostPorts
    for c in containers:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(f"hostPort: container {c['name']} uses hostPort {p['hostPort']}")
    # capabilities_baseline
    for c in containers:
        added = set((_sc(c).get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            out.append(f"capabilities: container {c['name']} adds {sorted(added - BASELINE_CAPABILITIES)}")
    # appArmorProfile: fields (pod and containers) and the older annotations
    for where, sc in (("pod", psc), *((f"container {c['name']}", _sc(c)) for c in containers)):
        t = (sc.get("appArmorProfile") or {}).get("type")
        if t is not None and t not in ("RuntimeDefault", "Localhost"):
            out.append(f"AppArmor: {where} appArmorProfile {t}")
    for key, value in ((metadata or {}).get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value not in ("", "runtime/default") \
                and not value.startswith("localhost/"):
            out.append(f"AppArmor: annotation {key}={value}")
    # seLinuxOptions
    for where, sc in (("pod", psc), *((f"container {c['name']}", _sc(c)) for c in containers)):
        opts = sc.get("seLinuxOptions") or {}
        if opts.get("type", "") not in SELINUX_TYPES:
            out.append(f"seLinuxOptions: {where} type {opts['type']}")
        for field in ("user", "role"):
            if opts.get(field, ""):
                out.append(f"seLinuxOptions: {where} sets {field}")
    # procMount: from policy v1.35, any procMount is allowed with user namespaces
    # (hostUsers: false) at this level
    if v < (1, 35) or spec.get("hostUsers") is not False:
        for c in containers:
            pm = _sc(c).get("procMount")
            if pm not in (None, "Default"):
                out.append(f"procMount: container {c['name']} procMount {pm}")
    # seccompProfile_baseline
    for where, sc in (("pod", psc), *((f"container {c['name']}", _sc(c)) for c in containers)):
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"seccompProfile: {where} is Unconfined")
    # sysctls
    allowed = set().union(*(names for since, names in SYSCTLS if v >= since))
    for s in psc.get("sysctls") or []:
        if s.get("name") not in allowed:
            out.append(f"sysctls: {s.get('name')} is not a safe sysctl")
    # windowsHostProcess
    for where, sc in (("pod", psc), *((f"container {c['name']}", _sc(c)) for c in containers)):
        if (sc.get("windowsOptions") or {}).get("hostProcess") is True:
            out.append(f"Windows HostProcess: {where}")
    # hostProbesAndHostLifecycle (policy v1.34 on): probes and lifecycle handlers may not
    # name a host.
    if v >= (1, 34):
        for c in containers:
            handlers = [(p, c.get(p)) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
            handlers += [(f"lifecycle.{h}", (c.get("lifecycle") or {}).get(h)) for h in ("postStart", "preStop")]
            for what, h in handlers:
                for kind in ("httpGet", "tcpSocket"):
                    host = ((h or {}).get(kind) or {}).get("host")
                    if host:
                        out.append(f"probe/lifecycle host: container {c['name']} {what}.{kind}.host={host}")
    return out


def _restricted(spec: dict, v: tuple[int, int]) -> list[str]:
    out = []
    psc = _sc(spec)
    containers = all_containers(spec)
    windows = (spec.get("os") or {}).get("name") == "windows"
    # restrictedVolumes
    for vol in spec.get("volumes") or []:
        kinds = [k for k in vol if k != "name"]
        if any(k not in RESTRICTED_VOLUME_TYPES for k in kinds):
            out.append(f"volume types: volume {vol['name']} is {kinds}")
    # allowPrivilegeEscalation (not for Windows pods)
    if not windows:
        for c in containers:
            if _sc(c).get("allowPrivilegeEscalation") is not False:
                out.append(f"allowPrivilegeEscalation: container {c['name']} does not set it to false")
    # runAsNonRoot: the pod's value, overridden per container; explicit false always fails
    pod_nonroot = psc.get("runAsNonRoot")
    if pod_nonroot is False:
        out.append("runAsNonRoot: pod sets it to false")
    for c in containers:
        value = _sc(c).get("runAsNonRoot")
        if value is False:
            out.append(f"runAsNonRoot: container {c['name']} sets it to false")
        elif value is None and pod_nonroot is not True:
            out.append(f"runAsNonRoot: container {c['name']} does not set it, nor does the pod")
    # runAsUser: never 0
    if psc.get("runAsUser") == 0:
        out.append("runAsUser: pod runs as 0")
    for c in containers:
        if _sc(c).get("runAsUser") == 0:
            out.append(f"runAsUser: container {c['name']} runs as 0")
    # seccompProfile_restricted (not for Windows pods): RuntimeDefault or Localhost, on the
    # pod or on every container
    if not windows:
        ok_types = ("RuntimeDefault", "Localhost")
        pod_type = (psc.get("seccompProfile") or {}).get("type")
        if pod_type is not None and pod_type not in ok_types:
            out.append(f"seccompProfile: pod is {pod_type}")
        for c in containers:
            t = (_sc(c).get("seccompProfile") or {}).get("type")
            if t is not None and t not in ok_types:
                out.append(f"seccompProfile: container {c['name']} is {t}")
            elif t is None and pod_type is None:
                out.append(f"seccompProfile: container {c['name']} has none, nor has the pod")
    # capabilities_restricted (not for Windows pods): drop ALL, add at most NET_BIND_SERVICE
    if not windows:
        for c in containers:
            caps = _sc(c).get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                out.append(f"capabilities: container {c['name']} does not drop ALL")
            added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
            if added:
                out.append(f"capabilities: container {c['name']} adds {sorted(added)}")
    # procMount_restricted: Default even with user namespaces
    for c in containers:
        pm = _sc(c).get("procMount")
        if pm not in (None, "Default"):
            out.append(f"procMount: container {c['name']} procMount {pm}")
    return out


def violations(spec: dict, metadata: dict | None, level: str, version: str = "latest") -> list[str]:
    """What a pod (its spec and metadata) breaks at `level` and policy `version`: empty when
    the Pod Security admission plugin would admit it. "restricted" includes "baseline"."""
    if level not in LEVELS:
        raise ValueError(f"Pod Security level {level!r}: expected one of {', '.join(LEVELS)}")
    v = parse_version(version)
    if level == "privileged":
        return []
    out = _baseline(spec, metadata or {}, v)
    if level == "restricted":
        out += [x for x in _restricted(spec, v) if x not in out]
    return out
