"""The flags the manifests give promdrop's binaries exist: every `--flag` of the exporter's
args and of the examples' `promdrop run` / `promdrop write` commands is looked up in the
binary's own `--help` (the binaries built from this checkout; deploy/validate.sh builds them
and passes their paths in PROMDROP_EXPORTER_BIN and PROMDROP_BIN)."""

from __future__ import annotations

import os
import re
import shlex

from .render import pod_spec
from .report import fail, ok, run, say


def help_flags(cmd: list[str]) -> set[str] | None:
    """The long flags a command's --help lists, or None when it cannot run."""
    try:
        r = run([*cmd, "--help"])
    except OSError as e:
        fail(f"{' '.join(cmd)} --help: {e}")
        return None
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} --help: exit {r.returncode}: {r.stderr.strip()}")
        return None
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9.-]*)", r.stdout))


def used_flags(args: list[str]) -> list[str]:
    """The long flags in an argument list, up to a `--` (what follows is another program's)."""
    out = []
    for a in args:
        if a == "--":
            break
        if a.startswith("--"):
            out.append(a.split("=", 1)[0])
    return out


def check(rendered: dict[str, list[dict]]) -> None:
    exporter = os.environ.get("PROMDROP_EXPORTER_BIN")
    cli = os.environ.get("PROMDROP_BIN")
    if not exporter or not cli:
        fail("PROMDROP_EXPORTER_BIN and PROMDROP_BIN are not set: run deploy/validate.sh, which builds the binaries")
        return
    known_exporter = help_flags([exporter])
    known_cli: dict[str, set[str] | None] = {}
    missing: dict[str, set[str]] = {}
    n = 0
    for name, docs in rendered.items():
        for o in docs:
            spec = pod_spec(o)
            if spec is None:
                continue
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                if c["name"] == "exporter" and known_exporter is not None:
                    for f in used_flags(c.get("args", [])):
                        n += 1
                        if f not in known_exporter:
                            missing.setdefault("promdrop-exporter", set()).add(f)
                cmd = c.get("command", [])
                if cmd and cmd[0].endswith("/promdrop") and len(cmd) > 1:
                    sub = cmd[1]
                    if sub not in known_cli:
                        known_cli[sub] = help_flags([cli, sub])
                    # Flags of a shell script's `promdrop write` too.
                    scripts = [a for a in cmd if "promdrop write" in a]
                    groups = [(sub, cmd[2:])] + [("write", shlex.split(s.split("promdrop write", 1)[1].replace("\\\n", " ").split("\n")[0]))
                                                  for s in scripts]
                    for subcommand, args in groups:
                        if subcommand not in known_cli:
                            known_cli[subcommand] = help_flags([cli, subcommand])
                        if known_cli[subcommand] is None:
                            continue
                        for f in used_flags(args):
                            n += 1
                            if f not in known_cli[subcommand]:
                                missing.setdefault(f"promdrop {subcommand}", set()).add(f)
    for binary, flags in sorted(missing.items()):
        fail(f"the manifests give {binary} flags its --help does not list: {', '.join(sorted(flags))}")
    ok("flags in the manifests found in the binaries' --help", n - sum(len(f) for f in missing.values()))
    if not missing:
        say(f"flags: {n} uses of flags in the manifests, all listed by the binaries' --help")
