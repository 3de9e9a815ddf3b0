"""PyTorch Lightning with DDP: two Trainers of two ranks each are two members at a time of one population."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

import poptrain
from poptrain.store import open_store
from conftest import ROOT
from checks_callbacks import check_copies

SCRIPT_PATH = os.pathsep.join([os.path.join(ROOT, "src"), os.path.join(ROOT, "tests")])  # job_helpers too

pytestmark = pytest.mark.slow

POPULATION, STEPS = 4, 8

# One job: a Trainer with strategy="ddp" on 2 CPU devices (Lightning starts rank 1 by running this
# file again). Each rank validates on its own shard and the callback tells the mean of the ranks'
# val_loss. Each rank logs, at every validation, the member, its step, its own val_loss, the
# decision, a digest of the weights before the tell and after it, and the optimiser's learning
# rate, to LOG.RANK. Every rank first waits for all RANKS of the jobs to start, so each job trains.
FIT = '''
import hashlib, json, os, sys, time
import torch
import lightning as L
import poptrain
from poptrain.lightning import PBTCallback

torch.set_num_threads(1)
url, log, ranks = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
x = torch.randn(64, 4)
y = (x[:, 0] + x[:, 1] > 0).long()
data = torch.utils.data.TensorDataset(x, y)


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.dropout = torch.nn.Dropout(0.5)

    def training_step(self, batch, i):
        return torch.nn.functional.cross_entropy(self.layer(self.dropout(batch[0])), batch[1])

    def validation_step(self, batch, i):
        self.log("val_loss", torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1]))  # this rank's

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


from job_helpers import all_started, digest


class Logged(PBTCallback):
    def on_fit_start(self, trainer, module):
        all_started(log, trainer.global_rank, ranks)
        super().on_fit_start(trainer, module)

    def on_validation_end(self, trainer, module):
        member, before = self.member, digest(module)  # what a checkpoint at this step holds, unless exploited
        loss = float(trainer.callback_metrics.get("val_loss", float("nan")))
        super().on_validation_end(trainer, module)
        if trainer.sanity_checking or member is None:
            return
        decision = self.decisions[-1]
        entry = dict(member=member.id, step=member.step, loss=loss, decision=type(decision).__name__, before=before,
                     after=digest(module), lr=trainer.optimizers[0].param_groups[0]["lr"], dropout=module.dropout.p,
                     source=getattr(decision, "source", None), world=trainer.world_size)
        with open(f"{log}.{trainer.global_rank}", "a") as f:
            f.write(json.dumps(entry) + "\\n")


trainer = L.Trainer(callbacks=[Logged(url, "ddp", monitor="val_loss", hparam_attributes={"dropout": "dropout.p"},
                              reduce="mean")],
                    strategy="ddp", devices=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1)
loader = torch.utils.data.DataLoader(data, batch_size=16)
trainer.fit(Net(), loader, loader)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ranks(log: str) -> tuple[list[dict], list[dict]]:
    """What rank 0 and rank 1 of one job logged, interval by interval."""
    return tuple([json.loads(line) for line in open(f"{log}.{rank}")] for rank in (0, 1))  # type: ignore[return-value]


def test_two_ddp_trainers_of_two_ranks_share_a_population_and_agree_rank_by_rank(tmp_path):
    url = f"sqlite:///{tmp_path}/ddp.db"
    poptrain.Experiment(name="ddp", trainable=None, space={"lr": poptrain.LogUniform(0.001, 0.5),
                                                           "dropout": poptrain.Uniform(0.0, 0.5)},
                        metric="val_loss", mode="min", population=POPULATION, steps=STEPS, ready=poptrain.Every(2),
                        exploit=poptrain.Truncation(0.5), lease=10.0, storage=url, seed=3).create()
    script = tmp_path / "fit.py"
    script.write_text(FIT)
    logs = [str(tmp_path / f"job{j}") for j in range(2)]
    procs = []
    for log in logs:
        env = {**os.environ, "PYTHONPATH": SCRIPT_PATH, "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), url, log, "4"], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        for p in procs:
            out, _ = p.communicate(timeout=150)
            assert p.returncode == 0, out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    store = open_store(url)
    assert all(m.status == "done" and m.step == STEPS for m in store.members("ddp"))
    entries, losses, differ = [], {}, 0
    for log in logs:
        first, second = ranks(log)
        losses.update({(e["member"], e["step"]): (e["loss"] + f["loss"]) / 2 for e, f in zip(first, second)})
        differ += sum(e.pop("loss") != f.pop("loss") for e, f in zip(first, second))
        assert first and first == second  # the same member, step, decision, weights and lr on both ranks
        assert {e["world"] for e in first} == {2}  # one Trainer of two ranks, not two members
        entries += first
    assert len(entries) == POPULATION * STEPS  # each interval trained once, by one job's two ranks together
    assert differ > 0  # the ranks' shards give different losses, and the score told is their mean
    assert {(r.member, r.step): r.score for r in store.reports("ddp")} == pytest.approx(losses)
    # check_copies' log: weights at ready points (before the tell) and right after each copy
    logged = [{"kind": "ready", "member": e["member"], "step": e["step"], "weights": e["before"]}
              for e in entries if e["decision"] in ("Continue", "Finished") and e["step"] % 2 == 0]
    logged += [{"kind": "exploit", "member": e["member"], "step": e["step"], "source": e["source"],
                "weights": e["after"], "lr": e["lr"], "dropout": e["dropout"]}
               for e in entries if e["decision"] == "Exploit"]
    check_copies(store, "ddp", POPULATION, STEPS, logged, hparams={"lr": "lr", "dropout": "dropout"})


def test_a_monitor_no_rank_logs_ends_the_ddp_job_with_one_clear_error_and_gives_the_member_back(tmp_path):
    url = f"sqlite:///{tmp_path}/typo.db"
    poptrain.Experiment(name="ddp", trainable=None, space={"lr": poptrain.LogUniform(0.001, 0.5),
                                                           "dropout": poptrain.Uniform(0.0, 0.5)},
                        population=2, steps=2, lease=60.0, storage=url).create()
    script = tmp_path / "fit.py"
    script.write_text(FIT.replace('monitor="val_loss"', 'monitor="val_los"'))
    env = {**os.environ, "PYTHONPATH": SCRIPT_PATH, "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(script), url, str(tmp_path / "job"), "2"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "monitors 'val_los'" in run.stdout + run.stderr  # raised while a member was held
    # rank 0 gave it back as the job failed: the minute-long lease has not run out
    assert all(m.worker is None and m.status == "active" for m in open_store(url).members("ddp"))
