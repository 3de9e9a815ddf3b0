"""Hugging Face Transformers under torchrun: two jobs of two ranks are two members at a time of one population."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import poptrain
from poptrain.store import open_store
from conftest import ROOT
from checks_callbacks import check_copies

SCRIPT_PATH = os.pathsep.join([os.path.join(ROOT, "src"), os.path.join(ROOT, "tests")])  # job_helpers too

pytestmark = pytest.mark.slow

POPULATION, STEPS, EVAL_STEPS = 4, 6, 2

# One rank of a torchrun job: a two-layer BERT built from a config (nothing downloaded) on synthetic
# tokens, and a Trainer with the callback. At every evaluation the rank logs, to LOG.RANK, the
# member, its step, the decision, a digest of the weights before the tell and after it, and the
# optimizer's learning rate and weight decay. Every rank first waits for all RANKS of the jobs to start.
TRAIN = '''
import hashlib, json, os, sys, time
import torch
import transformers
from poptrain.transformers import PBTCallback

torch.set_num_threads(1)
url, log, out, ranks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.manual_seed(0)
ids = torch.randint(4, 32, (64, 8))
labels = (ids[:, 0] > 17).long()
data = [{"input_ids": i, "labels": l} for i, l in zip(ids, labels)]
config = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=16, num_labels=2)


from job_helpers import all_started, digest


class Logged(PBTCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        all_started(log, args.process_index, ranks)
        return super().on_train_begin(args, state, control, **kwargs)

    def on_evaluate(self, args, state, control, model=None, optimizer=None, **kwargs):
        member, before = self.member, digest(model)
        control = super().on_evaluate(args, state, control, model=model, optimizer=optimizer, **kwargs)
        if member is None:
            return control
        decision = self.decisions[-1]
        entry = dict(member=member.id, step=member.step, decision=type(decision).__name__, before=before,
                     after=digest(model), source=getattr(decision, "source", None),
                     lr=getattr(self._scheduler, "scheduler", self._scheduler).base_lrs[0],
                     weight_decay=optimizer.param_groups[0]["weight_decay"], world=args.world_size)
        with open(f"{log}.{args.process_index}", "a") as f:
            f.write(json.dumps(entry) + "\\n")
        return control


args = transformers.TrainingArguments(
    output_dir=out, eval_strategy="steps", eval_steps=EVAL_STEPS, max_steps=MAX_STEPS,
    per_device_train_batch_size=8, per_device_eval_batch_size=32, learning_rate=1e-3, weight_decay=0.01,
    save_strategy="no", logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
    dataloader_num_workers=0, ddp_backend="gloo", ddp_timeout=120)
trainer = transformers.Trainer(model=transformers.BertForSequenceClassification(config), args=args,
                               train_dataset=data, eval_dataset=data, callbacks=[Logged(url, "hf", monitor="loss")])
trainer.train()
'''


def test_two_torchrun_jobs_of_hugging_face_trainers_share_a_population_and_agree_rank_by_rank(tmp_path):
    url = f"sqlite:///{tmp_path}/hf.db"
    poptrain.Experiment(name="hf", trainable=None, space={"learning_rate": poptrain.LogUniform(1e-4, 1e-1),
                                                          "weight_decay": poptrain.Uniform(0.0, 0.1)},
                        metric="eval_loss", mode="min", population=POPULATION, steps=STEPS, ready=poptrain.Every(2),
                        exploit=poptrain.Truncation(0.5), lease=10.0, storage=url, seed=3).create()
    script = tmp_path / "train.py"
    # max_steps lets one job train every member, should the other be slow to start
    script.write_text(TRAIN.replace("EVAL_STEPS", str(EVAL_STEPS)).replace("MAX_STEPS",
                                                                           str(EVAL_STEPS * STEPS * POPULATION)))
    env = {**os.environ, "PYTHONPATH": SCRIPT_PATH, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    logs = [str(tmp_path / f"job{j}") for j in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               str(script), url, log, str(tmp_path / f"out{j}"), "4"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for j, log in enumerate(logs)]
    try:
        for p in procs:
            out, _ = p.communicate(timeout=150)
            assert p.returncode == 0, out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    store = open_store(url)
    assert all(m.status == "done" and m.step == STEPS for m in store.members("hf"))
    entries = []
    for log in logs:
        first, second = ([json.loads(line) for line in open(f"{log}.{rank}")] for rank in (0, 1))
        assert first and first == second  # the same member, step, decision, weights and hyperparameters on both ranks
        assert {e["world"] for e in first} == {2}  # one Trainer of two ranks, not two members
        entries += first
    assert len(entries) == POPULATION * STEPS  # each interval trained once, by one job's two ranks together
    logged = [{"kind": "ready", "member": e["member"], "step": e["step"], "weights": e["before"]}
              for e in entries if e["decision"] in ("Continue", "Finished") and e["step"] % 2 == 0]
    logged += [{"kind": "exploit", "member": e["member"], "step": e["step"], "source": e["source"],
                "weights": e["after"], "lr": e["lr"], "weight_decay": e["weight_decay"]}
               for e in entries if e["decision"] == "Exploit"]
    check_copies(store, "hf", POPULATION, STEPS, logged,
                 hparams={"learning_rate": "lr", "weight_decay": "weight_decay"})
