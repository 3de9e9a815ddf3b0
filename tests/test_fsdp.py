"""Sharded members: FSDP2 torchrun jobs of 2 ranks (gloo, CPU) share a population; copies hold their source's full state."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import poptrain
from poptrain.store import CheckpointStore, open_store
from conftest import ROOT

pytestmark = pytest.mark.slow

POPULATION, STEPS = 4, 12
LOOP = os.path.join(ROOT, "examples", "fsdp_own_loop.py")


def fingerprint(state: dict) -> str:
    """The example's hash of a full state's tensors, computed here from what the store holds."""
    tensors = [(f"model.{k}", v) for k, v in state["model"].items()]
    tensors += [(f"optimizer.{p}.{k}", v) for p, s in state["optimizer"]["state"].items() for k, v in s.items()]
    digest = hashlib.sha1()
    for key, tensor in sorted(tensors):
        digest.update(key.encode() + tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def trace(tmp_path: Path, job: str) -> list[dict]:
    """The job's intervals, after checking that both ranks logged the same ones, full-state hashes included."""
    first, second = ([json.loads(line) for line in (tmp_path / f"{job}.{rank}").read_text().splitlines()]
                     for rank in (0, 1))
    keys = ("member", "step", "hparams", "state", "decision", "source")
    assert [{k: e[k] for k in keys} for e in first] == [{k: e[k] for k in keys} for e in second]
    return first


def test_fsdp_jobs_share_a_population_and_a_copy_holds_its_sources_full_state(tmp_path):
    url = f"sqlite:///{tmp_path}/fsdp.db"
    poptrain.Experiment(name="fsdp", trainable=None, metric="neg_mse", mode="max",
                        space={"lr": poptrain.LogUniform(0.001, 0.3), "momentum": poptrain.Uniform(0.0, 0.95)},
                        population=POPULATION, steps=STEPS, ready=poptrain.Every(2), exploit=poptrain.Truncation(0.25),
                        lease=5.0, storage=url, seed=0).create()
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    jobs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              LOOP, url, "--cpu", "--trace", str(tmp_path / job), "--timeout", "60"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
            for job in "ab"]
    try:
        for job in jobs:
            out, _ = job.communicate(timeout=240)
            assert job.returncode == 0, out
    finally:
        for job in jobs:
            job.kill()
    entries = trace(tmp_path, "a") + trace(tmp_path, "b")
    assert sorted((e["member"], e["step"]) for e in entries) == [(m, s) for m in range(POPULATION)
                                                                 for s in range(1, STEPS + 1)]
    store = open_store(url)
    assert all(m.status == "done" and m.step == STEPS for m in store.members("fsdp"))
    logged = {(e["member"], e["step"]): e for e in entries}
    events = store.events("fsdp")
    assert events and len(events) == sum(e["decision"] == "Exploit" for e in entries)
    for event in events:  # right after the copy, the gathered full state is the source's as of the copied step
        copy = logged[(event.member, event.step)]
        assert copy["source"] == event.source and copy["hparams"] == pytest.approx(event.new_hparams)
        assert copy["state"] == logged[(event.source, event.source_step)]["state"]
    checkpoints = CheckpointStore(store.get_spec("fsdp")["checkpoints"])
    for m in range(POPULATION):  # what rank 0 wrote is the full state both ranks gathered at that step
        newest = store.checkpoints("fsdp", m)[0]
        state = checkpoints.load(newest.key, newest.checksum)
        assert set(state["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"}
        assert state["model"]["2.weight"].shape == (64, 64)  # whole, not one rank's shard
        assert fingerprint(state) == logged[(m, newest.step)]["state"]


ROUND_TRIP = """
import datetime, sys, torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from poptrain.store import CheckpointStore
from poptrain.torch.sharded import full_state, load_full_state

dist.init_process_group("gloo", init_method="file://" + sys.argv[1] + "/pg", rank=0, world_size=1,
                        timeout=datetime.timedelta(seconds=60))

def member(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    fully_shard(model[0])
    fully_shard(model)
    return model, torch.optim.Adam(model.parameters(), lr=0.01)

source, opt = member(0)
for _ in range(3):
    opt.zero_grad()
    source(torch.randn(16, 4)).pow(2).mean().backward()
    opt.step()
store = CheckpointStore("file://" + sys.argv[1] + "/ck")
checksum = store.save("exp/m.ckpt", full_state(source, opt))  # refused if the state were not plain data
saved = store.load("exp/m.ckpt", checksum)
copy, copy_opt = member(1)  # a fresh member whose optimiser has no state yet
load_full_state(copy, copy_opt, saved)
again = full_state(copy, copy_opt)
assert again["model"].keys() == saved["model"].keys()
assert all(torch.equal(again["model"][k], saved["model"][k]) for k in saved["model"])
assert all(torch.equal(again["optimizer"]["state"][p][k], v) for p, s in saved["optimizer"]["state"].items()
           for k, v in s.items())
before = {k: v.clone() for k, v in saved["model"].items()}
before_opt = {(p, k): v.clone() for p, s in saved["optimizer"]["state"].items() for k, v in s.items()}
copy_opt.zero_grad()
copy(torch.randn(16, 4)).pow(2).mean().backward()
copy_opt.step()  # training the copy leaves the state it was loaded from alone
assert all(torch.equal(before[k], saved["model"][k]) for k in before)
assert all(torch.equal(v, saved["optimizer"]["state"][p][k]) for (p, k), v in before_opt.items())
assert not torch.equal(full_state(copy, copy_opt)["model"]["0.weight"], saved["model"]["0.weight"])
dist.destroy_process_group()
print("round trip ok")
"""


def test_a_full_state_goes_through_the_checkpoint_store_and_into_a_fresh_sharded_member(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", ROUND_TRIP, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "round trip ok" in run.stdout, run.stdout + run.stderr
