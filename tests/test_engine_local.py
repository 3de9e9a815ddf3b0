"""The local engine: real worker processes, exploits verified on disk, workers killed mid-run."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

import poptrain
from poptrain.engines import Local
from poptrain.engines.worker import join
from poptrain.experiment import load_spec
from poptrain.store import CheckpointStore, open_store
from conftest import EXAMPLES, ROOT
from trainables import CrashesProcess, Quadratic

pytestmark = pytest.mark.slow
TESTS = os.path.dirname(os.path.abspath(__file__))


def verify_checkpoints(result: poptrain.Result) -> int:
    """Every checkpoint on record loads and matches its checksum; returns how many."""
    files = CheckpointStore(result.spec["checkpoints"])
    count = 0
    for m in result.store.members(result.name):
        for c in result.store.checkpoints(result.name, m.id):
            files.load(c.key, c.checksum)
            count += 1
    return count


def test_mlp_digits_exploits_copy_weights_and_apply_new_hparams(tmp_path):
    exp = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/mlp.db", population=6, steps=9,
                    keep_checkpoints=1000)
    result = exp.run(engine="local", workers=2)
    assert set(result.members().status) == {"done"}
    events = result.events()
    assert len(events) >= 2
    files = CheckpointStore(result.spec["checkpoints"])
    ckpts = {m: result.store.checkpoints("mlp_digits", m) for m in range(6)}
    for ev in events:
        source = max((c for c in ckpts[ev.source] if c.step == ev.source_step and c.created <= ev.time),
                     key=lambda c: c.created)
        after = min((c for c in ckpts[ev.member] if c.step == ev.step and c.created >= ev.time),
                    key=lambda c: c.created)
        src, dst = files.load(source.key, source.checksum), files.load(after.key, after.checksum)
        for name, tensor in src["model"].items():
            assert torch.equal(tensor, dst["model"][name]), (ev, name)
        assert after.hparams == ev.new_hparams
        for group in dst["optimizer"]["param_groups"]:
            assert group["lr"] == pytest.approx(ev.new_hparams["lr"])
            assert group["momentum"] == pytest.approx(ev.new_hparams["momentum"])
            assert group["weight_decay"] == pytest.approx(ev.new_hparams["weight_decay"])
    assert verify_checkpoints(result) > 0


def _run_in_thread(exp: poptrain.Experiment, engine: Local) -> tuple[threading.Thread, list]:
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(exp.run(engine=engine)))
    thread.start()
    return thread, outcome


def _wait_for_steps(url: str, name: str, steps: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if open_store(url).progress(name, "max").steps_done >= steps:
                return
        except poptrain.StorageError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{name} did not reach {steps} steps in {timeout} s")


def quadratic(url: str, **kw) -> poptrain.Experiment:
    base = dict(name="q", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.3)}, metric="score",
                population=6, steps=30, ready=poptrain.Every(3), storage=url, seed=1, lease=3.0, paths=[TESTS])
    return poptrain.Experiment(**{**base, **kw})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_of_a_worker_mid_run_loses_nothing(tmp_path, monkeypatch, request, backend):
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.01")
    url = f"sqlite:///{tmp_path}/k.db" if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    engine = Local(workers=2)
    thread, outcome = _run_in_thread(quadratic(url, checkpoints=str(tmp_path / "ckpt")), engine)
    _wait_for_steps(url, "q", 40)
    victim = engine.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    thread.join(120)
    result = outcome[0]
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {30}
    steps = result.frame().groupby("member").step.apply(sorted)
    assert all(s == list(range(1, 31)) for s in steps)
    assert verify_checkpoints(result) >= 6
    folder = os.path.join(result.spec["checkpoints"], "q")
    finished = [f for f in os.listdir(folder) if f.endswith(".ckpt")]
    # disk use stays bounded: `keep_checkpoints` per member, plus at most one the victim wrote but never recorded
    assert len(finished) <= 6 * result.spec["keep_checkpoints"] + 1


def test_worker_joining_by_url_survives_a_dead_peer_through_lease_expiry(tmp_path, monkeypatch):
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.01")
    url = f"sqlite:///{tmp_path}/j.db"
    quadratic(url).create()
    ctx = mp.get_context("spawn")
    peers = [ctx.Process(target=join, args=(url, "q", f"host-{i}")) for i in range(2)]
    for p in peers:
        p.start()
    _wait_for_steps(url, "q", 30)
    os.kill(peers[0].pid, signal.SIGKILL)  # nobody tells the store: only the lease can free its members
    peers[1].join(120)
    assert peers[1].exitcode == 0
    store = open_store(url)
    assert all(m.status == "done" and m.step == 30 for m in store.members("q"))
    assert len(store.reports("q")) == 6 * 30


def test_interrupted_run_resumes_without_repeating_finished_work(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    log = tmp_path / "trained.log"
    quadratic(url, population=4, steps=60, synchronous=False).create()
    env = {**os.environ, "POPTRAIN_TEST_SLEEP": "0.01", "POPTRAIN_TEST_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS])}
    cmd = [sys.executable, "-m", "poptrain", "resume", "--storage", url, "--experiment", "q", "--workers", "2",
           "--quiet"]
    run = subprocess.Popen(cmd, env=env, start_new_session=True)
    _wait_for_steps(url, "q", 100)
    os.killpg(run.pid, signal.SIGKILL)  # the whole run: engine and workers
    run.wait(30)
    time.sleep(0.5)
    store = open_store(url)
    before = {m.id: m for m in store.members("q")}
    ckpt_step = {m: (store.checkpoints("q", m)[0].step if store.checkpoints("q", m) else 0) for m in before}
    log.write_text("")
    refused = subprocess.run(cmd, env=env, timeout=120, capture_output=True, text=True)
    assert refused.returncode == 2 and "is being trained" in refused.stderr  # its dead workers' leases are live
    assert subprocess.run(cmd + ["--force"], env=env, timeout=120).returncode == 0
    members = store.members("q")
    assert all(m.status == "done" and m.step == 60 for m in members)
    assert len(store.reports("q")) == 4 * 60
    seeds = {m.seed: m.id for m in members}
    trained = {m: 0 for m in before}
    for line in log.read_text().splitlines():
        trained[seeds[int(line.split()[0])]] += 1
    # each member restarts from its last checkpoint: it trains exactly the intervals after it
    assert trained == {m: 60 - ckpt_step[m] for m in before}
    assert any(ckpt_step[m] > 0 for m in before)
    assert all(trained[m] == 0 for m, rec in before.items() if rec.status == "done")


def test_a_member_that_kills_its_worker_process_fails_alone(tmp_path):
    space = {"lr": poptrain.LogUniform(0.01, 0.3), "bad": poptrain.Choice([0, 1])}
    initial = [{"lr": 0.1, "bad": 1}] + [{"lr": 0.1, "bad": 0}] * 3
    exp = quadratic(f"sqlite:///{tmp_path}/c.db", trainable=CrashesProcess, space=space, population=4, steps=12,
                    initial=initial, max_failures=2, exploit=None)
    result = exp.run(engine="local", workers=2)
    members = result.members().set_index("member")
    assert members.loc[0, "status"] == "failed" and members.loc[0, "failures"] == 3
    assert "worker process died (exit code 1)" in result.store.member("q", 0).error
    assert (members.loc[1:, "status"] == "done").all() and (members.loc[1:, "step"] == 12).all()


FULL_DISK = """
import errno, sys
import poptrain
from poptrain.engines import Local
from poptrain.store.checkpoints import CheckpointStore, _write_failure
from trainables import Quadratic

real_save = CheckpointStore.save

def save(self, key, state):  # room for the checkpoints of step 0 and the first ready point only
    if "-s000000-" not in key and "-s000003-" not in key:
        raise _write_failure(f"checkpoint {key}", OSError(errno.ENOSPC, "No space left on device"))
    return real_save(self, key, state)

CheckpointStore.save = save  # the workers are forked from this process, so they inherit the full disk
exp = poptrain.Experiment(name="q", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                          metric="score", population=6, steps=12, ready=poptrain.Every(3), storage=sys.argv[1])
try:
    exp.run(engine=Local(workers=2))
except poptrain.PoptrainError as exc:
    print("RUN STOPPED:", exc, file=sys.stderr)
    sys.exit(2)
"""


def test_a_full_disk_mid_run_stops_the_run_without_failing_members(tmp_path):
    """A checkpoint write that fails for lack of space is the disk's fault, not the member's: the run stops
    with one line and the members stay active, to be resumed once there is room."""
    url = f"sqlite:///{tmp_path}/full.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT) + "/src", str(ROOT) + "/tests"])}
    done = subprocess.run([sys.executable, "-c", FULL_DISK, url], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "RUN STOPPED: a worker stopped on an error that restarting it would not mend" in done.stderr
    assert "No space left on device; free space there" in done.stderr and "Traceback" not in done.stderr
    members = open_store(url).members("q")
    assert all(m.status == "active" and m.failures == 0 for m in members)
