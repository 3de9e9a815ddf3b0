"""Kill a whole `poptrain` run (engine and workers), resume it, and compare with the same spec run without a kill."""

from __future__ import annotations

import os

import pytest

import poptrain
from poptrain.store import open_store
from faults import tally
from faults.helpers import ROOT, TESTS, audit, experiment, kill_run_when, resume_command, steps_done, trained_steps

pytestmark = pytest.mark.slow

POPULATION, STEPS = 6, 24


def spec(url: str) -> poptrain.Experiment:
    """Synchronous, so the run is deterministic: the resumed run must end exactly where the other one does."""
    return experiment(url, population=POPULATION, steps=STEPS, ready=poptrain.Every(4), synchronous=True)


def test_killed_run_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.04")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()

    # the reference: the same spec, never interrupted
    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(whole / "trained.log"))
    reference = spec(f"sqlite:///{whole}/r.db").run(engine="local", workers=2)
    ref_trained = trained_steps(whole / "trained.log", reference.store, "f")
    assert all(s == list(range(1, STEPS + 1)) for s in ref_trained.values())  # no kill: every step trained once

    # the same spec as a `poptrain` command in its own process group, killed whole mid-run
    url = f"sqlite:///{cut}/r.db"
    spec(url).create()
    first, second = cut / "first.log", cut / "second.log"
    env = {**os.environ, "POPTRAIN_TEST_LOG": str(first),
           "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS])}
    # past the barrier at step 12 and short of the next one (16): members hold work newer than their checkpoints
    kill_run_when(resume_command(url), env, lambda: steps_done(url, "f") >= POPULATION * 13 + 3, "members past step 13")
    store = open_store(url)
    at_kill = {m.id: m for m in store.members("f")}
    assert any(m.status == "active" for m in at_kill.values())
    last_ckpt = {i: max((c.step for c in store.checkpoints("f", i)), default=0) for i in at_kill}
    assert any(last_ckpt[i] > 0 for i in at_kill)

    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(second))
    resumed = poptrain.resume(url, "f", workers=2, force=True)  # force: the dead workers' leases are still live

    found = audit(resumed.store, "f", STEPS, resumed.spec["checkpoints"])
    tally.add(kills=1, **found.tally())
    found.assert_clean()
    before, after = trained_steps(first, store, "f"), trained_steps(second, store, "f")
    for i in at_kill:
        assert before[i] == list(range(1, len(before[i]) + 1)), i  # the first run trained each step once
        # the resume restarts each member at its last checkpoint and trains every later step once
        expect = [] if at_kill[i].status == "done" else list(range(last_ckpt[i] + 1, STEPS + 1))
        assert after[i] == expect, (i, last_ckpt[i], after[i])
    assert any(len(before[i]) > last_ckpt[i] for i in at_kill)  # the kill cost work that had to be redone
    # so no step up to a member's last checkpoint was trained twice
    assert all(s > last_ckpt[i] for i in at_kill for s in set(before[i]) & set(after[i]))

    # the same result as the uninterrupted run: reports per member, every score, every exploit
    ref_frame, frame = reference.frame(), resumed.frame()
    assert frame.groupby("member").size().to_dict() == ref_frame.groupby("member").size().to_dict()
    assert frame[["member", "step", "score"]].values.tolist() == ref_frame[["member", "step", "score"]].values.tolist()
    decisions = [(e.member, e.step, e.source, e.source_step, e.new_hparams) for e in resumed.events()]
    assert sorted(decisions) == sorted((e.member, e.step, e.source, e.source_step, e.new_hparams)
                                       for e in reference.events())
    assert decisions
