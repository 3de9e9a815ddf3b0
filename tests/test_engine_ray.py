"""The Ray engine: the shared worker loop as Ray actors on a local Ray (started and stopped by the run)."""

from __future__ import annotations

import os

import poptrain
from poptrain.store import CheckpointStore
from trainables import Quadratic

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_a_ray_run_trains_every_member_and_each_copy_reads_a_verified_source(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(os.path.dirname(TESTS), "src"), TESTS,
                                                      os.environ.get("PYTHONPATH", "")]))
    exp = poptrain.Experiment(name="r", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                              metric="score", population=4, steps=12, ready=poptrain.Every(3), seed=6,
                              storage=f"sqlite:///{tmp_path}/r.db", paths=[TESTS], keep_checkpoints=100)
    result = exp.run(engine="ray", workers=2)
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {12}
    assert all(sorted(s) == list(range(1, 13)) for s in result.frame().groupby("member").step.apply(list))
    files = CheckpointStore(result.spec["checkpoints"])
    assert result.events()
    for ev in result.events():
        sources = [c for c in result.store.checkpoints("r", ev.source) if c.step == ev.source_step]
        assert sources and all(files.load(c.key, c.checksum) is not None for c in sources)
    workers = {w for w in (m.worker for m in result.store.members("r")) if w}
    assert workers == set()  # every lease released at the end
