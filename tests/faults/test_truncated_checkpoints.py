"""A checkpoint file truncated on disk (mid-run, or between a killed run and its resume): detected, member falls back."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import poptrain
from poptrain.engines import Local
from poptrain.store import CheckpointStore, Store, open_store
from faults import tally
from faults.helpers import (ROOT, TESTS, Run, audit, experiment, kill_run_when, resume_command, trained_steps,
                            wait_until)

pytestmark = pytest.mark.slow

POPULATION, STEPS = 4, 30
CHECKSUM_WARNING = "does not match its checksum"


@dataclass
class Truncated:
    member: int
    key: str
    previous_step: int  # where the member must fall back to


def truncate_newest(store: Store, name: str, checkpoints: str) -> list[Truncated]:
    """Cut the newest checkpoint file of every active member that has an older one to half its bytes."""
    files = CheckpointStore(checkpoints)
    cut = []
    for m in store.members(name):
        ckpts = store.checkpoints(name, m.id)  # newest first
        if m.status != "active" or len(ckpts) < 2:
            continue
        path = files.path(ckpts[0].key)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        cut.append(Truncated(m.id, ckpts[0].key, ckpts[1].step))
    return cut


def everyone_has_two_checkpoints(url: str) -> bool:
    store = open_store(url)
    try:
        return all(len(store.checkpoints("f", m.id)) >= 2 for m in store.members("f"))
    except poptrain.StorageError:
        return False


def check_fell_back(cut: list[Truncated], result: poptrain.Result, log: Path, stderr: str) -> None:
    """Each cut checkpoint was detected and dropped, and its member retrained from the one before it."""
    found = audit(result.store, "f", STEPS, result.spec["checkpoints"])
    detected = [c for c in cut if c.key not in {k.key for k in result.store.checkpoints("f", c.member)}]
    tally.add(corrupt=len(detected), **found.tally())
    found.assert_clean()  # includes: every checkpoint still on record verifies
    assert cut and len(detected) == len(cut)
    files = CheckpointStore(result.spec["checkpoints"])
    assert not any(files.exists(c.key) for c in cut)  # the corrupt file is deleted, not left behind
    assert stderr.count(CHECKSUM_WARNING) >= len(cut)
    trained = trained_steps(log, result.store, "f")
    for c in cut:
        assert trained[c.member][0] == c.previous_step + 1, (c, trained[c.member][:5])


def test_checkpoint_truncated_mid_run_is_detected_and_the_member_falls_back(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.03")
    log = tmp_path / "trained.log"
    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(log))
    url = f"sqlite:///{tmp_path}/t.db"
    exp = experiment(url, population=POPULATION, steps=STEPS)
    engine = Local(workers=2)
    run = Run(lambda: exp.run(engine=engine))
    wait_until(lambda: everyone_has_two_checkpoints(url) or not run.alive(), "two checkpoints per member")
    workers = engine.worker_pids()
    for pid in workers:  # frozen, nobody writes a newer checkpoint while we cut the newest
        os.kill(pid, signal.SIGSTOP)
    cut = truncate_newest(open_store(url), "f", exp.checkpoints)
    log.write_text("")
    for pid in workers:  # the replacements must load the members from disk
        os.kill(pid, signal.SIGKILL)
    result = run.finish(120)
    tally.add(kills=len(workers))
    check_fell_back(cut, result, log, capfd.readouterr().err)


def test_checkpoint_truncated_between_a_killed_run_and_its_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    exp = experiment(url, population=POPULATION, steps=STEPS)
    exp.create()
    log = tmp_path / "trained.log"
    env = {**os.environ, "POPTRAIN_TEST_SLEEP": "0.03", "POPTRAIN_TEST_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS])}
    cmd = resume_command(url, quiet=False)  # the checksum warnings are what this test reads
    kill_run_when(cmd, env, lambda: everyone_has_two_checkpoints(url), "two checkpoints per member")
    cut = truncate_newest(open_store(url), "f", exp.checkpoints)
    log.write_text("")
    resumed = subprocess.run(cmd + ["--force"], env=env, timeout=120, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    tally.add(kills=1)
    check_fell_back(cut, poptrain.load(url, "f"), log, resumed.stderr)
