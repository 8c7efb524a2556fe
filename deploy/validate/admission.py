"""The shipped ValidatingAdmissionPolicy (deploy/components/hostpath-policy/policy.yaml),
evaluated offline: its CEL expressions, read from the YAML, run with cel-python (a CEL
implementation in Python) as the API server runs them (variables in order, then every
validation; a pod is admitted when all are true). The cases:

- testdata/admission/admit/*.yaml and deny/*.yaml: one Pod each, in its namespace;
- the Pod Security fixtures of the baseline checks the policy repeats (privileged, host
  namespaces, host ports, capabilities): each gets the verdict of its folder;
- the rendered example CronJobs of the hostPath mode: admitted in their namespace, which
  opts in with the binding's label; the exporter's namespace does not opt in.
"""

from __future__ import annotations

from pathlib import Path

import celpy
import yaml

from .render import DEPLOY, SHARED, by_kind, name_of, pod_template
from .report import fail, ok, say

POLICY = DEPLOY / "components" / "hostpath-policy" / "policy.yaml"
CASES = Path(__file__).resolve().parent / "testdata" / "admission"
# The baseline checks the policy repeats, by the fixture files' prefix.
REPEATED_CHECKS = ("privileged", "hostnamespaces", "hostports", "capabilities_baseline", "hostpathvolumes")


class Policy:
    """A ValidatingAdmissionPolicy's variables and validations, compiled once."""

    def __init__(self, policy: dict):
        env = celpy.Environment()
        self.variables = [(v["name"], env.program(env.compile(v["expression"]))) for v in policy["spec"].get("variables", [])]
        self.validations = [(v["expression"], env.program(env.compile(v["expression"]))) for v in policy["spec"]["validations"]]

    def refusals(self, pod: dict, namespace: str) -> list[str]:
        """The validations a pod fails (empty: admitted), as for a CREATE in `namespace`."""
        activation = {
            "object": celpy.json_to_cel(pod),
            "request": celpy.json_to_cel({"namespace": namespace, "operation": "CREATE"}),
        }
        variables: dict = {}
        for name, program in self.variables:
            activation["variables"] = celpy.celtypes.MapType(variables)
            variables[celpy.celtypes.StringType(name)] = program.evaluate(activation)
        activation["variables"] = celpy.celtypes.MapType(variables)
        out = []
        for expr, program in self.validations:
            result = program.evaluate(activation)
            if not isinstance(result, celpy.celtypes.BoolType):
                out.append(f"{' '.join(expr.split())} -> error {result!r}")
            elif not result:
                out.append(" ".join(expr.split()))
        return out


def load() -> tuple[dict, dict]:
    docs = [d for d in yaml.safe_load_all(POLICY.read_text()) if d]
    return by_kind(docs, "ValidatingAdmissionPolicy")[0], by_kind(docs, "ValidatingAdmissionPolicyBinding")[0]


def check(rendered: dict[str, list[dict]]) -> None:
    if not POLICY.is_file():
        fail(f"no ValidatingAdmissionPolicy at {POLICY}")
        return
    policy_doc, binding = load()
    policy = Policy(policy_doc)
    if binding["spec"]["policyName"] != policy_doc["metadata"]["name"]:
        fail(f"{POLICY.name}: the binding names policy {binding['spec']['policyName']}")
    opt_in = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
    n = 0
    for verdict in ("admit", "deny"):
        files = sorted((CASES / verdict).glob("*.yaml"))
        if not files:
            fail(f"no admission cases in {CASES / verdict}")
        for f in files:
            pod = yaml.safe_load(f.read_text())
            refused = policy.refusals(pod, pod["metadata"]["namespace"])
            if verdict == "admit" and refused:
                fail(f"admission policy: {verdict}/{f.name} is refused: {refused}")
            elif verdict == "deny" and not refused:
                fail(f"admission policy: {verdict}/{f.name} is admitted")
            else:
                n += 1
    fixtures = SHARED / "conformance" / "pod-security" / "baseline" / "v1.35"
    m = 0
    for f in sorted(fixtures.glob("*/*.yaml")):
        if not f.name.startswith(REPEATED_CHECKS):
            continue
        pod = yaml.safe_load(f.read_text())
        refused = policy.refusals(pod, "team-a")
        if (f.parent.name == "pass") == bool(refused):
            fail(f"admission policy: Pod Security fixture {f.parent.name}/{f.name} gets the wrong verdict: {refused or 'admitted'}")
        else:
            m += 1
    if m == 0:
        fail(f"admission policy: no Pod Security fixtures found in {fixtures}")
    # The shipped job namespace opts in, the exporter's does not, and the example jobs pass.
    for name, docs in rendered.items():
        for ns in by_kind(docs, "Namespace"):
            labels = ns["metadata"].get("labels", {})
            opted = all(labels.get(k) == v for k, v in opt_in.items())
            runs_exporter = any(o["kind"] == "DaemonSet" and o["metadata"]["namespace"] == ns["metadata"]["name"] for o in docs)
            if runs_exporter and opted:
                fail(f"{name}: namespace {ns['metadata']['name']} runs the exporter (parent directory) and opts in to the hostPath policy")
            if not runs_exporter and labels.get("pod-security.kubernetes.io/enforce") == "privileged" and not opted:
                fail(f"{name}: job namespace {ns['metadata']['name']} enforces privileged without the hostPath policy's label {opt_in}")
        for o in docs:
            t = pod_template(o)
            if t is None or o["kind"] == "DaemonSet":
                continue
            if any("hostPath" in v for v in t["spec"].get("volumes", [])):
                refused = policy.refusals(t, o["metadata"]["namespace"])
                if refused:
                    fail(f"{name}: {name_of(o)} would be refused by the hostPath policy: {refused}")
                else:
                    n += 1
    ok("admission policy cases (cel-python)", n)
    ok("Pod Security fixtures given their verdict by the admission policy", m)
    say(f"admission policy: {n} cases and {m} Pod Security fixtures evaluated with cel-python")
