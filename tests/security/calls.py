"""Calling the CLI in this process, and the checks every user mistake must pass."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, Iterator

import pytest

from conftest import ROOT
from poptrain.cli import main

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def restore_poptrain_logger() -> Iterator[None]:
    """main() configures the `poptrain` logger; other test modules should not inherit that."""
    log = logging.getLogger("poptrain")
    level, handlers = log.level, list(log.handlers)
    yield
    log.setLevel(level)
    log.handlers[:] = handlers


def cli(*argv: Any) -> tuple[int, str, str]:
    """Run `poptrain ARGV` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


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
