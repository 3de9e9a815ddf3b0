"""Hugging Face Transformers: processes each running `Trainer.train` with PBTCallback form one population."""

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

pytestmark = pytest.mark.slow

POPULATION, STEPS, EVAL_STEPS = 4, 8, 2

# One process: a two-layer BERT built from a config (nothing downloaded) on synthetic token data,
# and a Trainer with the callback. It logs what it holds at each evaluation: a digest of the
# weights at ready points, and at each exploit the digest right after the copy with the
# optimizer's base learning rate, the weight decay of its decayed and undecayed groups, and the
# scheduler's warmup.
TRAIN = '''
import hashlib, json, sys
import torch
import transformers
import poptrain
from poptrain.transformers import PBTCallback

url, log, out = sys.argv[1], sys.argv[2], sys.argv[3]
torch.manual_seed(0)
ids = torch.randint(4, 32, (64, 8))
labels = (ids[:, 0] > 17).long()
data = [{"input_ids": i, "labels": l} for i, l in zip(ids, labels)]
config = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=16, num_labels=2)


def note(**entry):
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\\n")


def digest(model):
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()


class Logged(PBTCallback):
    def on_evaluate(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        member, before = self.member, digest(model)
        control = super().on_evaluate(args, state, control, model=model, **kwargs)
        if member is None:
            return control
        decision = self.decisions[-1]
        if isinstance(decision, poptrain.Exploit):
            groups = optimizer.param_groups
            schedule = lr_scheduler.lr_lambdas[0]
            note(kind="exploit", member=member.id, step=member.step, source=decision.source, weights=digest(model),
                 lr=lr_scheduler.base_lrs[0], initial_lr=groups[0]["initial_lr"],
                 weight_decay=groups[0]["weight_decay"], undecayed=groups[1]["weight_decay"],
                 warmup=schedule.keywords["num_warmup_steps"],
                 lr_now=groups[0]["lr"], lr_schedule=lr_scheduler.base_lrs[0] * schedule(lr_scheduler.last_epoch))
        elif isinstance(decision, (poptrain.Continue, poptrain.Finished)) and member.step % 2 == 0:
            note(kind="ready", member=member.id, step=member.step, weights=before)
        return control


args = transformers.TrainingArguments(
    output_dir=out, eval_strategy="steps", eval_steps=EVAL_STEPS, max_steps=MAX_STEPS,
    per_device_train_batch_size=16, per_device_eval_batch_size=64, learning_rate=1e-3, weight_decay=0.01,
    warmup_steps=2, lr_scheduler_type="linear", save_strategy="no", logging_strategy="no", report_to=[],
    use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
trainer = transformers.Trainer(model=transformers.BertForSequenceClassification(config), args=args,
                               train_dataset=data, eval_dataset=data,
                               callbacks=[Logged(url, "hf", monitor="loss")])
trainer.train()
'''


def test_hugging_face_trainers_train_one_population(tmp_path):
    url = f"sqlite:///{tmp_path}/hf.db"
    poptrain.Experiment(name="hf", trainable=None, space={"learning_rate": poptrain.LogUniform(1e-4, 1e-1),
                                                          "weight_decay": poptrain.Uniform(0.0, 0.1),
                                                          "warmup_steps": poptrain.IntUniform(0, 4)},
                        metric="eval_loss", mode="min", population=POPULATION, steps=STEPS, ready=poptrain.Every(2),
                        exploit=poptrain.Truncation(0.5), lease=5.0, storage=url, seed=3).create()
    script = tmp_path / "train.py"
    script.write_text(TRAIN.replace("EVAL_STEPS", str(EVAL_STEPS)).replace("MAX_STEPS", str(EVAL_STEPS * STEPS)))
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    logs = [tmp_path / f"log{i}.jsonl" for i in range(POPULATION)]
    procs = [subprocess.Popen([sys.executable, str(script), url, str(log), str(tmp_path / f"out{i}")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i, log in enumerate(logs)]
    for p in procs:
        assert p.wait(240) == 0, p.stderr.read()
    store = open_store(url)
    assert all(m.status == "done" and m.step == STEPS for m in store.members("hf"))
    entries = [json.loads(line) for log in logs if log.exists() for line in log.read_text().splitlines()]
    check_copies(store, "hf", POPULATION, STEPS, entries,
                 hparams={"learning_rate": "lr", "weight_decay": "weight_decay", "warmup_steps": "warmup"})
    for copy in (e for e in entries if e["kind"] == "exploit"):
        assert copy["initial_lr"] == copy["lr"] and copy["undecayed"] == 0.0  # biases and norms stay undecayed
        assert copy["lr_now"] == pytest.approx(copy["lr_schedule"])  # the current rate follows the new schedule


def test_a_trainer_that_never_evaluates_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from poptrain.transformers import PBTCallback

    url = f"sqlite:///{tmp_path}/no.db"
    poptrain.Experiment(name="no", trainable=None, space={"learning_rate": poptrain.LogUniform(1e-4, 1e-1)},
                        population=2, steps=2, storage=url).create()
    config = transformers.BertConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                                     intermediate_size=4, max_position_embeddings=4, num_labels=2)
    data = [{"input_ids": torch.tensor([1, 2]), "labels": 0}] * 4
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, save_strategy="no",
                                          report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = transformers.Trainer(model=transformers.BertForSequenceClassification(config), args=args,
                                   train_dataset=data, callbacks=[PBTCallback(url, "no")])
    with pytest.raises(poptrain.PoptrainError, match="never evaluates: set eval_strategy='steps'"):
        trainer.train()
    assert all(m.step == 0 and m.worker is None for m in open_store(url).members("no"))  # nothing taken, nothing lost
