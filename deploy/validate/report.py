"""What every section shares: the failures and counters of one run, and running a tool."""

from __future__ import annotations

import subprocess

failures: list[str] = []
counts: dict[str, int] = {}


def ok(what: str, n: int = 1) -> None:
    """Counts `n` passed checks of kind `what` (printed as a table at the end)."""
    counts[what] = counts.get(what, 0) + n


def fail(message: str) -> None:
    """Records a failure; the run then exits 1 and lists it again at the end."""
    failures.append(message)
    print(f"  FAIL {message}")


def say(message: str) -> None:
    """One line of progress under the current section."""
    print(f"  ok   {message}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs a tool, capturing its output as text."""
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def promtool(args: list[str], what: str) -> bool:
    """Runs promtool; a non-zero exit is a failure naming `what` with promtool's output."""
    r = run(["promtool", *args])
    if r.returncode != 0:
        fail(f"{what}: promtool {' '.join(args)}:\n{r.stdout}{r.stderr}")
        return False
    return True
