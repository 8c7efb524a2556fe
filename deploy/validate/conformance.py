"""The Pod Security check against the admission plugin's own fixtures: every pod in
../shared/conformance/pod-security/<level>/<version>/<pass|fail>/ must get the verdict of its
folder from podsecurity.violations, all of them."""

from __future__ import annotations

import yaml

from . import podsecurity
from .render import SHARED
from .report import fail, ok, say

FIXTURES = SHARED / "conformance" / "pod-security"


def check() -> None:
    files = sorted(FIXTURES.glob("*/*/*/*.yaml"))
    if not files:
        fail(f"no Pod Security fixtures in {FIXTURES} (shared/ must be beside the checkout)")
        return
    wrong = 0
    for f in files:
        level, version, verdict = f.parts[-4:-1]
        if verdict not in ("pass", "fail"):
            fail(f"{f}: folder {verdict!r} is neither pass nor fail")
            continue
        pod = yaml.safe_load(f.read_text())
        found = podsecurity.violations(pod["spec"], pod.get("metadata"), level, version)
        if verdict == "pass" and found:
            wrong += 1
            fail(f"Pod Security {level} {version}: {f.name} should pass, refused: {found}")
        elif verdict == "fail" and not found:
            wrong += 1
            fail(f"Pod Security {level} {version}: {f.name} should be refused, passes")
    ok("Pod Security fixtures given their folder's verdict", len(files) - wrong)
    if not wrong:
        say(f"Pod Security: all {len(files)} upstream fixtures ({FIXTURES}) get their folder's verdict")
