"""Workers that share only a PostgreSQL URL and an s3:// checkpoint URL, as separate hosts would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import poptrain
from poptrain.store import CheckpointStore, open_store
from conftest import ROOT

TESTS = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.slow


def experiment(storage: str, checkpoints: str, name: str) -> poptrain.Experiment:
    return poptrain.Experiment(name=name, trainable="trainables:Quadratic", space={"lr": poptrain.LogUniform(0.01, 0.3)},
                               metric="score", population=6, steps=15, ready=poptrain.Every(3), seed=8,
                               storage=storage, checkpoints=checkpoints, paths=[TESTS], keep_checkpoints=100)


def assert_consistent_lineage(result: poptrain.Result) -> None:
    """Every member at its budget, one report per step, and every copied source checkpoint verifies."""
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {15}
    assert all(sorted(s) == list(range(1, 16)) for s in result.frame().groupby("member").step.apply(list))
    files = CheckpointStore(result.spec["checkpoints"])
    assert result.events()
    for ev in result.events():
        sources = [c for c in result.store.checkpoints(result.name, ev.source) if c.step == ev.source_step]
        assert sources, ev
        for c in sources:
            files.load(c.key, c.checksum)  # raises CorruptCheckpoint if it does not match


def test_three_worker_processes_sharing_postgres_and_s3(postgres, s3):
    url = postgres.new_database()
    experiment(url, f"{s3}/hosts", "hosts").create()
    env = {**os.environ, "POPTRAIN_TEST_SLEEP": "0.005",
           "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS])}
    hosts = [subprocess.Popen([sys.executable, "-m", "poptrain", "worker", "--storage", url, "--experiment", "hosts",
                               "--id", f"host-{i}", "--quiet"], env=env) for i in range(3)]
    assert [h.wait(180) for h in hosts] == [0, 0, 0]
    assert_consistent_lineage(poptrain.load(url, "hosts"))


def test_a_ray_run_on_postgres_and_s3(postgres, s3, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(ROOT, "src"), TESTS]))
    url = postgres.new_database()
    result = experiment(url, f"{s3}/ray", "ray").run(engine="ray", workers=2)
    assert_consistent_lineage(result)
    assert open_store(url, create=False).experiments() == ["ray"]
