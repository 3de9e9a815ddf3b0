"""The vectorized engine in shards, beyond the suite: a shard that dies, a resume in another layout, shards that spawn."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

import poptrain
from engines.helpers import POPULATION, READY, STEPS, Logs, Outcome, interrupt, spec
from faults.helpers import Run, audit, steps_done, wait_until
from poptrain.engines import Vectorized

pytestmark = pytest.mark.slow


def shard_processes() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("poptrain-shard-")]


def test_a_dead_shard_costs_each_member_one_failure_and_the_run_finishes_as_if_it_had_not(tmp_path, logs: Logs,
                                                                                             reference):
    url = f"sqlite:///{tmp_path}/k.db"
    run = Run(lambda: spec(url).run(engine=Vectorized(shards=2)))
    wait_until(lambda: steps_done(url, "f") >= POPULATION * (READY + 1) or not run.alive(), "steps past a checkpoint")
    shards = shard_processes()
    assert run.alive() and len(shards) == 2, "the run ended before a shard could be killed"
    os.kill(shards[1].pid, signal.SIGKILL)
    killed_at = steps_done(url, "f")
    result = run.finish(120)
    assert killed_at < POPULATION * STEPS and not shard_processes()
    audit(result.store, "f", STEPS, result.spec["checkpoints"]).assert_clean()  # each step reported once
    members = result.store.members("f")
    assert [m.failures for m in members] == [1] * POPULATION and "died" in members[0].error
    assert Outcome.of(result) == reference  # restarted from the checkpoint: the same scores and decisions


def test_a_run_in_shards_resumes_in_the_same_layout_only(tmp_path, logs: Logs, reference):
    url = f"sqlite:///{tmp_path}/r.db"
    interrupt(lambda: spec(url).run(engine=Vectorized(shards=2)),
              lambda: steps_done(url, "f") >= POPULATION * (READY + 1))
    wait_until(lambda: not shard_processes(), "the interrupted run's shards to end", 20)
    for other, written in [(Vectorized(), "in 2 shards of 2, 2 members, not unsharded"),
                           (Vectorized(shards=3), "not in 3 shards of 2, 1, 1 members")]:
        with pytest.raises(poptrain.SpecError, match=written):
            poptrain.resume(url, "f", engine=other, force=True)
    store = poptrain.load(url, "f").store
    assert {(m.status, m.failures) for m in store.members("f")} == {("active", 0)}  # nothing charged or lost
    result = poptrain.resume(url, "f", engine=Vectorized(shards=2), force=True)
    audit(result.store, "f", STEPS, result.spec["checkpoints"]).assert_clean()
    assert Outcome.of(result) == reference


def test_shards_of_several_threads_start_fresh_interpreters_and_decide_alike(tmp_path, logs: Logs, reference):
    """Torch's thread pool does not survive a fork, so shards of two threads each are spawned (importing the
    trainable by its path); they decide as the serial engine does."""
    logs.clear()
    result = spec(f"sqlite:///{tmp_path}/t.db").run(engine=Vectorized(shards=2, threads=2))
    assert Outcome.of(result) == reference
    pids = set(logs.worker_pids())
    assert len(pids) == 2 and os.getpid() not in pids  # each shard trained in a process of its own
