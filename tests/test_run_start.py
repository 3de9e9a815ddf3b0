"""Starting a run is atomic with the check for a live run: of two runs started at the same instant, one trains."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import poptrain
from poptrain.store import open_store
from conftest import EXAMPLES

START_TOGETHER = """
import sys, time
from poptrain.cli import main
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_of_two_runs_started_together_one_trains_and_the_other_refuses(tmp_path, request, backend):
    url = f"sqlite:///{tmp_path}/r.db" if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    command = ["run", f"{EXAMPLES}/toy_quadratic.toml", "--storage", url, "--engine", "serial", "--steps", "60",
               "--checkpoints", str(tmp_path / "ckpt"), "--quiet"]
    start = time.time() + 4.0  # both have imported poptrain by then
    runs = [subprocess.Popen([sys.executable, "-c", START_TOGETHER, str(start), *command], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((p.wait(120), p.stderr.read().strip()) for p in runs)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    refusal = outcomes[1][1].splitlines()
    assert len(refusal) == 1 and refusal[0].startswith("error: experiment 'toy_quadratic' is being trained by another run")
    store = open_store(url)
    assert len(store.reports("toy_quadratic")) == 2 * 60
    assert {m.step for m in store.members("toy_quadratic")} == {60}


def test_a_run_releases_its_hold_at_the_end(storage):
    exp = poptrain.Experiment(name="h", trainable="trainables:Quadratic", space={"lr": poptrain.LogUniform(0.01, 0.3)},
                              metric="score", population=2, steps=2, storage=storage)
    exp.run(engine="serial")
    store = open_store(storage)
    assert store.hold_run("h", "next", 10.0, now=time.time()) is None  # nobody holds it any more
