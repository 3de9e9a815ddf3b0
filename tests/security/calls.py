"""Calling the CLI in this process, and the checks every user mistake must pass."""

from __future__ import annotations

import os
import subprocess
import sys


from conftest import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))




def one_error(code: int, out: str, err: str, *needles: str) -> str:
    """Exit 2 and exactly one `error:` line on stderr naming the problem, no traceback; returns the line."""
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def python(code: str, *, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter that imports poptrain from src and the payloads from here."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), HERE]), "COLUMNS": "200"}
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def build_payload_store(url: str, name: str = "payload") -> None:
    """Train the payload experiment in another process, so that no connection of this one stays open on it."""
    done = python(f"from payloads import payload_experiment; payload_experiment({url!r}, {name!r})")
    assert done.returncode == 0, done.stderr
