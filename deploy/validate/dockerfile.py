"""The Dockerfile and .dockerignore: every COPY source exists and survives .dockerignore, every
workspace member is copied, the packages and binary names match the Cargo manifests, and the
manifests run the binaries at the paths the image puts them."""

from __future__ import annotations

import fnmatch
import re
import tomllib

from .render import DEPLOY, ROOT
from .report import fail, ok, say


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore lets `path` (relative) into the build context: the last
    matching pattern wins, a pattern matching a parent directory applies to its contents."""
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
    say(f"Dockerfile: {n_copy} COPY sources exist and pass .dockerignore; packages {sorted(built)} -> binaries promdrop, promdrop-exporter")
