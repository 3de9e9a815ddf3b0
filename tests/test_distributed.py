"""Members that span a process group: two torchrun jobs of 2 ranks share one population through ask/tell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import poptrain
from poptrain.store import open_store
from conftest import ROOT

pytestmark = pytest.mark.slow

POPULATION, STEPS = 4, 12
LOOP = os.path.join(ROOT, "examples", "ddp_own_loop.py")


def create(url: str, lease: float = 2.0) -> None:
    poptrain.Experiment(name="ddp", trainable=None, metric="neg_mse", mode="max",
                        space={"lr": poptrain.LogUniform(0.001, 0.3), "momentum": poptrain.Uniform(0.0, 0.95)},
                        population=POPULATION, steps=STEPS, ready=poptrain.Every(2), exploit=poptrain.Truncation(0.25),
                        lease=lease, storage=url, seed=0).create()


def torchrun(tmp_path: Path, job: str, url: str, *extra: str) -> subprocess.Popen:
    """One torchrun job of 2 ranks running the DDP example; its ranks trace to JOB.0 and JOB.1."""
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             LOOP, url, "--trace", str(tmp_path / job), "--timeout", "60", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)


def trace(tmp_path: Path, job: str, rank: int) -> list[dict]:
    path = tmp_path / f"{job}.{rank}"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def same_on_both_ranks(tmp_path: Path, job: str) -> list[dict]:
    """Each interval as both ranks of the job logged it: the same member, step, hyperparameters, weights, decision."""
    first, second = trace(tmp_path, job, 0), trace(tmp_path, job, 1)
    keys = ("member", "step", "hparams", "weights", "decision", "source")
    both = min(len(first), len(second))
    assert len(first) - both <= 1 and len(second) - both <= 1  # only a killed rank's job may end an interval apart
    assert [{k: e[k] for k in keys} for e in first[:both]] == [{k: e[k] for k in keys} for e in second[:both]]
    return first


def test_two_torchrun_jobs_of_two_ranks_share_a_population_and_agree_rank_by_rank(tmp_path):
    url = f"sqlite:///{tmp_path}/ddp.db"
    create(url)
    jobs = [torchrun(tmp_path, job, url) for job in "ab"]
    for job in jobs:
        out, _ = job.communicate(timeout=180)
        assert job.returncode == 0, out
    entries = same_on_both_ranks(tmp_path, "a") + same_on_both_ranks(tmp_path, "b")
    assert len(entries) == POPULATION * STEPS  # every interval trained once, by one job
    assert {e["member"] for e in same_on_both_ranks(tmp_path, "a")} and {e["member"] for e in same_on_both_ranks(tmp_path, "b")}
    store = open_store(url)
    assert all(m.status == "done" and m.step == STEPS for m in store.members("ddp"))
    events = store.events("ddp")
    assert events and sum(e["decision"] == "Exploit" for e in entries) == len(events)
    for event in events:  # the copy holds the explored hyperparameters on both ranks
        logged = next(e for e in entries if e["member"] == event.member and e["step"] == event.step)
        assert logged["hparams"] == pytest.approx(event.new_hparams) and logged["source"] == event.source
    reports = store.reports("ddp")
    assert sorted((r.member, r.step) for r in reports) == [(m, s) for m in range(POPULATION) for s in range(1, STEPS + 1)]


def test_a_killed_rank_ends_its_job_and_the_other_job_finishes_its_member_from_the_checkpoint(tmp_path):
    url = f"sqlite:///{tmp_path}/ddp.db"
    create(url)
    jobs = [torchrun(tmp_path, job, url, "--sleep", "0.05") for job in "ab"]
    deadline = time.monotonic() + 90
    while len(trace(tmp_path, "a", 1)) < 4:
        assert time.monotonic() < deadline and jobs[0].poll() is None, "job a made no progress"
        time.sleep(0.05)
    os.kill(trace(tmp_path, "a", 1)[-1]["pid"], signal.SIGKILL)  # one rank of job a dies mid-run
    out_a, _ = jobs[0].communicate(timeout=120)
    assert jobs[0].returncode != 0, out_a  # torchrun ends the job whose rank died
    out_b, _ = jobs[1].communicate(timeout=180)
    assert jobs[1].returncode == 0, out_b
    store = open_store(url)
    assert all(m.status == "done" and m.step == STEPS for m in store.members("ddp"))
    # no interval recorded twice: what job a trained past its member's last checkpoint was rolled back
    assert sorted((r.member, r.step) for r in store.reports("ddp")) == [(m, s) for m in range(POPULATION)
                                                                       for s in range(1, STEPS + 1)]
    taken_over = {e["member"] for e in trace(tmp_path, "a", 0)} & {e["member"] for e in same_on_both_ranks(tmp_path, "b")}
    assert taken_over, "job b never finished a member job a had trained"


SCENARIOS = os.path.join(ROOT, "tests", "group_scenarios.py")


def scenario(tmp_path: Path, name: str, steps: int = 10, lease: float = 60.0, ready: int = 1) -> list[dict]:
    """Run one scenario of tests/group_scenarios.py as a torchrun job of 2 ranks; what each rank saw."""
    url = f"sqlite:///{tmp_path}/{name}.db"
    poptrain.Experiment(name="group", trainable=None, space={"lr": poptrain.Uniform(0.0, 1.0)}, population=1,
                        steps=steps, ready=poptrain.Every(ready), exploit=poptrain.Truncation(0.5), lease=lease,
                        storage=url, seed=0).create()
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          SCENARIOS, url, name, str(tmp_path / name)], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    seen = [json.loads((tmp_path / f"{name}.{rank}").read_text()) for rank in (0, 1)]
    assert run.returncode == 0, run.stdout + run.stderr
    assert seen[0]["member"] == seen[1]["member"] and seen[0]["type"] == "GroupConnection"
    assert seen[0]["store_on_this_rank"] and not seen[1]["store_on_this_rank"]  # rank 0 alone opens the store
    return seen


def test_a_score_told_by_every_rank_is_reduced_across_them_when_asked(tmp_path):
    seen = scenario(tmp_path, "reduce")
    assert seen[0]["decisions"] == seen[1]["decisions"]
    scores = [r.score for r in open_store(f"sqlite:///{tmp_path}/reduce.db").reports("group")]
    assert scores == [1.0, 1.5, 1.0]  # min of (1, 2); mean; rank 0's


def test_state_runs_on_every_rank_at_each_checkpoint_and_a_finished_member_ends_on_both(tmp_path):
    seen = scenario(tmp_path, "finish", steps=3)
    assert seen[0]["decisions"] == seen[1]["decisions"] == ["Continue", "Continue", "Finished"]
    assert seen[0]["calls"] == seen[1]["calls"] == ["state"] * 3  # a checkpoint at every ready step, on both ranks
    assert not seen[0]["running"] and not seen[1]["running"]
    store = open_store(f"sqlite:///{tmp_path}/finish.db")
    assert store.member("group", 0).status == "done"
    ckpt = store.checkpoints("group", 0)[0]
    from poptrain.store import CheckpointStore
    assert CheckpointStore(store.get_spec("group")["checkpoints"]).load(ckpt.key, ckpt.checksum) == {"rank": 0}


def test_an_error_on_rank_zero_is_raised_on_every_rank(tmp_path):
    seen = scenario(tmp_path, "error")
    assert "no state today" in seen[0]["error"] and seen[1]["error"] == seen[0]["error"]


def test_a_lost_lease_releases_the_member_on_every_rank(tmp_path):
    seen = scenario(tmp_path, "lost", lease=1.0)
    assert seen[0]["taken_by_thief"] == 0
    assert seen[0]["decisions"] == seen[1]["decisions"] == ["Released"]
    assert not seen[0]["running"] and not seen[1]["running"]


def test_an_interval_not_ready_takes_the_quick_tell_and_both_ranks_hold_the_same_member(tmp_path):
    seen = scenario(tmp_path, "quick", ready=3)
    assert seen[0]["decisions"] == seen[1]["decisions"] == ["Continue"] * 3
    assert seen[0]["record"] == seen[1]["record"] == [3, 3, 3, 1.5, 3]  # step, its record, version, mean score, ready
    assert seen[0]["calls"] == seen[1]["calls"] == ["state"]  # the checkpoint at step 3 only
    store = open_store(f"sqlite:///{tmp_path}/quick.db")
    assert [(r.step, r.score) for r in store.reports("group")] == [(1, 1.5), (2, 1.5), (3, 1.5)]
    assert store.member("group", 0).step == 3 and store.checkpoints("group", 0)[0].step == 3


def test_quick_tells_without_reduce_store_rank_zeros_score_and_read_nothing_of_the_other_ranks(tmp_path):
    seen = scenario(tmp_path, "quick_rank0", ready=3)
    assert seen[0]["decisions"] == seen[1]["decisions"] == ["Continue"] * 3
    assert seen[0]["record"] == seen[1]["record"] == [3, 2.0]
    assert [(r.step, r.score) for r in open_store(f"sqlite:///{tmp_path}/quick_rank0.db").reports("group")] == [
        (1, 2.0), (2, 2.0), (3, 2.0)]


def test_a_lease_lost_under_a_quick_tell_releases_the_member_on_every_rank_two_calls_later(tmp_path):
    seen = scenario(tmp_path, "lost_quick", lease=1.0, ready=5)
    assert seen[0]["taken_by_thief"] == 0
    # tell 1 is quick; tell 2 reads its gather, and rank 0's report of it finds the lease lost; tell 2's gather
    # carries that word, so tell 3 is a full call on both ranks and delivers the release
    assert seen[0]["decisions"] == seen[1]["decisions"] == ["Continue", "Continue", "Released"]
    assert seen[0]["running_before"] == seen[1]["running_before"] == [True, True, True]
    assert not seen[0]["running"] and not seen[1]["running"]
    assert open_store(f"sqlite:///{tmp_path}/lost_quick.db").reports("group") == []  # the thief's lease held


def test_a_result_that_is_not_a_score_on_one_rank_raises_on_every_rank_at_the_next_tell(tmp_path):
    seen = scenario(tmp_path, "bad_score", ready=3)
    assert seen[0]["decisions"] == seen[1]["decisions"] == ["Continue"]
    assert seen[1]["error"] == "MemberError: ValueError: evaluate()'s metric 'score' is 'oops', not a number"
    assert seen[0]["error"].startswith("MemberError: rank 1 of this member's group told a result that is not a score")
    assert open_store(f"sqlite:///{tmp_path}/bad_score.db").reports("group") == []  # nothing stored for it


def test_rank_zeros_result_that_is_not_a_score_raises_on_every_rank_at_the_next_tell(tmp_path):
    seen = scenario(tmp_path, "bad_score_rank0", ready=3)
    assert seen[0]["decisions"] == seen[1]["decisions"] == ["Continue"]
    assert seen[0]["error"] == "MemberError: ValueError: evaluate()'s metric 'score' is 'oops', not a number"
    assert seen[1]["error"].startswith("MemberError: rank 0 of this member's group told a result that is not a score")
