"""docs/contributing.md's "Adding a strategy", followed step by step: its files, its commands, its suite.

The page's code blocks are written where the page says to save them, in a copy of the repository's
toy example; its commands run as the page gives them (the dashboard through its data endpoint).
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import poptrain
from poptrain.policy import build_explore, registry
from poptrain.report.dashboard import create_app

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "contributing.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def page_steps() -> list[tuple[str, str, str | None, list[str]]]:
    """The section's code blocks in order: (language, code, the file it is saved as, commands to run once it is)."""
    section = PAGE.read_text(encoding="utf-8").split("## Adding a strategy", 1)[1]
    steps, start = [], 0
    for match in BLOCK.finditer(section):
        prose = " ".join(section[start:match.start()].split())  # what the page says before the block
        saved = re.findall(r"[Ss]ave (?:it|this|this spec) as `([^`]+)`", prose)
        steps.append((match.group(1), match.group(2), saved[-1] if saved else None, re.findall(r"run `([^`]+)`", prose)))
        start = match.end()
    return steps


def test_a_strategy_written_from_the_page_runs_reports_shows_and_passes_the_suite(tmp_path, monkeypatch):
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "toy_quadratic.py", tmp_path / "examples")  # what a clone holds
    saved, commands = [], []
    for language, code, path, runs in page_steps():
        if path is not None:
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code, encoding="utf-8")
            saved.append(path)
        elif language == "bash":
            commands += [line for line in code.splitlines() if line.strip()]
        commands += runs
    assert saved == ["examples/strategies/scale.py", "examples/toy_scale.toml", "examples/strategies/test_scale.py"]
    assert [c.split()[:2] for c in commands] == [["poptrain", "run"], ["poptrain", "report"], ["poptrain", "dashboard"],
                                                ["pytest", "examples/strategies/test_scale.py"]]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    monkeypatch.chdir(tmp_path)  # the page's relative paths and sqlite:///toy_scale.db are the current folder's
    outputs = {}
    for line in commands:
        argv = shlex.split(line)
        if argv[:2] == ["poptrain", "dashboard"]:
            check_dashboard(argv[argv.index("--storage") + 1])
            continue
        done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        outputs[argv[0] + " " + argv[1]] = done.stdout

    result = poptrain.load("sqlite:///toy_scale.db", "toy_scale")
    assert result.spec["explore"] == {"type": "scale:Scale", "factor": 0.9}  # stored by import path
    events = result.events()
    assert events and all(e.new_hparams[k] == pytest.approx(e.source_hparams[k] * 0.9) for e in events
                          for k in ("h0", "h1"))  # every explore was Scale's
    html = (tmp_path / "toy_scale.html").read_text(encoding="utf-8")
    assert "<th>scale</th>" in html  # the explore counts name the new strategy
    assert "10 passed" in outputs["pytest examples/strategies/test_scale.py"]

    # "From Python, pass ... the same table as a dict": it builds the same strategy.
    monkeypatch.setattr(registry, "_REGISTRY", copy.deepcopy(registry._REGISTRY))
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        made = build_explore({"type": "scale:Scale", "factor": 0.9}, [str(tmp_path / "examples" / "strategies")])
        assert type(made).__name__ == "Scale" and made.factor == 0.9 and made.to_dict()["type"] == "scale:Scale"
    finally:
        sys.modules.pop("scale", None)


def check_dashboard(storage: str) -> None:
    """The dashboard serves the run's page and its data (figures, exploits) from `storage`."""
    client = TestClient(create_app(storage))
    assert "toy_scale" in client.get("/").text
    assert client.get("/experiments/toy_scale").status_code == 200
    response = client.get("/api/experiments/toy_scale")
    assert response.status_code == 200
    data = response.json()
    assert data["figures"] and data["steps_done"] == 4 * 40 and data["live"] is False
    assert re.search(r"[1-9]\d* exploits", data["status"]), data["status"]
