"""Workers that share only a PostgreSQL URL and an s3:// checkpoint URL, as separate hosts would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import poptrain
from checks import assert_consistent_lineage
from conftest import ROOT
from poptrain.specfile import dump_spec
from poptrain.store import open_store

TESTS = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.slow


def experiment(storage: str, checkpoints: str, name: str) -> poptrain.Experiment:
    return poptrain.Experiment(name=name, trainable="trainables:Quadratic", space={"lr": poptrain.LogUniform(0.01, 0.3)},
                               metric="score", population=6, steps=15, ready=poptrain.Every(3), seed=8,
                               storage=storage, checkpoints=checkpoints, paths=[TESTS], keep_checkpoints=100)


def test_three_worker_processes_sharing_postgres_and_s3(postgres, s3, tmp_path):
    """Each 'host' runs the same command, as the tasks of a Slurm array do; one of them creates the experiment."""
    url = postgres.new_database()
    spec = experiment("sqlite:///unused.db", "unused", "hosts").to_spec()
    del spec["storage"], spec["checkpoints"]
    (tmp_path / "hosts.toml").write_text(dump_spec(spec))
    env = {**os.environ, "POPTRAIN_TEST_SLEEP": "0.005",
           "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS])}
    hosts = [subprocess.Popen([sys.executable, "-m", "poptrain", "worker", str(tmp_path / "hosts.toml"),
                               "--storage", url, "--checkpoints", f"{s3}/hosts", "--id", f"host-{i}", "--quiet"],
                              env=env) for i in range(3)]
    assert [h.wait(180) for h in hosts] == [0, 0, 0]
    result = poptrain.load(url, "hosts")
    assert_consistent_lineage(result, 15)
    assert len({e.member for e in result.events()}) > 0 and open_store(url, create=False).experiments() == ["hosts"]
    assert {r.worker for r in result.store.members("hosts")} == {None}


def test_a_ray_run_on_postgres_and_s3(postgres, s3, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(ROOT, "src"), TESTS]))
    url = postgres.new_database()
    result = experiment(url, f"{s3}/ray", "ray").run(engine="ray", workers=2)
    assert_consistent_lineage(result, 15)
    assert open_store(url, create=False).experiments() == ["ray"]
