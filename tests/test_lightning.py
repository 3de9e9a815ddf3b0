"""PyTorch Lightning: processes each running `trainer.fit` with PBTCallback form one population."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import poptrain
from poptrain.store import open_store
from conftest import ROOT
from checks_callbacks import check_copies, kill_midway

pytestmark = pytest.mark.slow

POPULATION, STEPS = 4, 8

# One process: a LightningModule and a Trainer with the callback, nothing else of poptrain. It logs
# what it holds at each validation: weights at ready points, and at each exploit the weights,
# the optimiser's learning rate and the module's dropout right after the copy.
FIT = '''
import json, sys
import torch
import lightning as L
import poptrain
from poptrain.lightning import PBTCallback

url, log = sys.argv[1], sys.argv[2]
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
        self.log("val_loss", torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def note(**entry):
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\\n")


class Logged(PBTCallback):
    def on_validation_end(self, trainer, module):
        member = self.member
        before = [p.tolist() for p in module.parameters()]  # what a checkpoint at this step holds, unless exploited
        super().on_validation_end(trainer, module)
        if trainer.sanity_checking or member is None:
            return
        decision = self.decisions[-1]
        if isinstance(decision, poptrain.Exploit):
            note(kind="exploit", member=member.id, step=member.step, source=decision.source,
                 weights=[p.tolist() for p in module.parameters()], lr=trainer.optimizers[0].param_groups[0]["lr"],
                 dropout=module.dropout.p)
        elif isinstance(decision, (poptrain.Continue, poptrain.Finished)) and member.step % 2 == 0:
            note(kind="ready", member=member.id, step=member.step, weights=before)


trainer = L.Trainer(callbacks=[Logged(url, "fit", monitor="val_loss", hparam_attributes={"dropout": "dropout.p"})],
                    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    num_sanity_val_steps=0, accelerator="cpu", devices=1)
loader = torch.utils.data.DataLoader(data, batch_size=16)
trainer.fit(Net(), loader, loader)
'''


def test_four_lightning_trainers_train_one_population_and_take_over_a_killed_one(tmp_path):
    url = f"sqlite:///{tmp_path}/fit.db"
    poptrain.Experiment(name="fit", trainable=None, space={"lr": poptrain.LogUniform(0.001, 0.5),
                                                           "dropout": poptrain.Uniform(0.0, 0.5)},
                        metric="val_loss", mode="min", population=POPULATION, steps=STEPS, ready=poptrain.Every(2),
                        exploit=poptrain.Truncation(0.5), lease=2.0, storage=url, seed=3).create()
    script = tmp_path / "fit.py"
    script.write_text(FIT)
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    logs = [tmp_path / f"log{i}.jsonl" for i in range(POPULATION)]
    procs = [subprocess.Popen([sys.executable, str(script), url, str(log)], env=env, stderr=subprocess.PIPE, text=True)
             for log in logs]
    store = open_store(url)
    victim, killed = kill_midway(store, "fit", procs, STEPS)
    for p in procs:
        if p is not killed:
            assert p.wait(120) == 0, p.stderr.read()
    members = store.members("fit")
    assert all(m.status == "done" and m.step == STEPS for m in members)  # the killed one's too: taken over
    assert members[victim].step == STEPS
    entries = [json.loads(line) for log in logs if log.exists() for line in log.read_text().splitlines()]
    check_copies(store, "fit", POPULATION, STEPS, entries, hparams={"lr": "lr", "dropout": "dropout"})


def test_a_monitor_the_module_never_logs_is_one_clear_error_and_gives_the_member_back(tmp_path):
    import torch
    import lightning as L
    from poptrain.lightning import PBTCallback

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, i):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, i):
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    url = f"sqlite:///{tmp_path}/typo.db"
    poptrain.Experiment(name="typo", trainable=None, space={"lr": poptrain.LogUniform(1e-3, 1e-1)}, population=2,
                        steps=2, storage=url).create()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=4)
    trainer = L.Trainer(callbacks=[PBTCallback(url, "typo", monitor="val_los")], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    with pytest.raises(poptrain.PoptrainError, match=r"monitors 'val_los'.*monitor one of \['val_loss'\]"):
        trainer.fit(Net(), loader, loader)
    members = open_store(url).members("typo")
    assert all(m.worker is None and m.status == "active" for m in members)  # given back for another process
