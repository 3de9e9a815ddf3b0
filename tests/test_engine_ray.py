"""The Ray engine: the shared worker loop as Ray actors on a local Ray (started and stopped by the run)."""

from __future__ import annotations

import os

import pytest

import poptrain
from checks import assert_consistent_lineage
from trainables import Quadratic

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_a_ray_run_trains_every_member_and_each_copy_reads_a_verified_source(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(os.path.dirname(TESTS), "src"), TESTS,
                                                      os.environ.get("PYTHONPATH", "")]))
    exp = poptrain.Experiment(name="r", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                              metric="score", population=4, steps=12, ready=poptrain.Every(3), seed=6,
                              storage=f"sqlite:///{tmp_path}/r.db", paths=[TESTS], keep_checkpoints=100,
                              exploit=poptrain.Truncation(0.5))  # the lower half copies: some copy, however the
    # two workers' members interleave (with the bottom quarter, a loaded CI machine once ran without one exploit)
    result = exp.run(engine="ray", workers=2)
    assert_consistent_lineage(result, 12)
    workers = {w for w in (m.worker for m in result.store.members("r")) if w}
    assert workers == set()  # every lease released at the end


def test_ray_workers_reserve_the_resources_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(os.path.dirname(TESTS), "src"), TESTS,
                                                      os.environ.get("PYTHONPATH", "")]))
    exp = poptrain.Experiment(name="big", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                              metric="score", population=2, steps=3, ready=poptrain.Every(3),
                              storage=f"sqlite:///{tmp_path}/r.db", paths=[TESTS])
    with pytest.raises(poptrain.PoptrainError, match="asks for 1 GPU.*has 0"):
        exp.run(engine="ray", resources={"gpu": 1})  # this machine has no GPU: refused, not left waiting
    result = exp.run(engine="ray", resources={"cpu": os.cpu_count()}, force=True)  # one worker takes every CPU
    assert set(result.members()["step"]) == {3}
    with pytest.raises(poptrain.SpecError, match="unknown resource 'memory'"):
        exp.run(engine="ray", resources={"memory": 1}, force=True)


def test_a_stuck_interval_on_ray_is_ended_and_charged_to_its_member(tmp_path, monkeypatch):
    from trainables import HangsAtTop

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(os.path.dirname(TESTS), "src"), TESTS,
                                                      os.environ.get("PYTHONPATH", "")]))
    exp = poptrain.Experiment(name="hang", trainable=HangsAtTop, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                              metric="score", population=3, steps=4, exploit=None, initial=[{"lr": 0.3}],
                              max_failures=1, storage=f"sqlite:///{tmp_path}/h.db", paths=[TESTS])
    result = exp.run(engine=poptrain.engines.Ray(workers=2, interval_timeout=2.0))
    members = {m.id: m for m in result.store.members("hang")}
    assert members[0].status == "failed" and members[0].failures == 2
    assert "interval_timeout" in members[0].error
    assert all(members[i].status == "done" and members[i].step == 4 for i in (1, 2))


def test_a_ray_worker_reports_how_long_its_interval_has_run_not_when_it_began():
    """On a cluster the driver compares the age with its own clock: a time of day from another node could be skewed."""
    import time

    from poptrain.engines.ray import RayWorker

    worker = RayWorker("sqlite:///unused.db", "e", "w", None, None)
    worker.inside.value = 3
    time.sleep(0.05)
    member, running = worker.interval()
    assert member == 3 and 0.05 <= running < 5
