"""The callbacks apply every hyperparameter of the space or refuse to start, and give their member back on errors."""

from __future__ import annotations

import pytest
import torch

import poptrain
from poptrain.store import open_store


def experiment(tmp_path, space: dict, name: str = "cb") -> str:
    url = f"sqlite:///{tmp_path}/{name}.db"
    poptrain.Experiment(name=name, trainable=None, space=space, metric="val_loss", mode="min", population=2, steps=2,
                        storage=url, seed=0).create()
    return url


def untouched(url: str, name: str = "cb") -> bool:
    """Nothing taken and nothing recorded: every member at step 0, unleased."""
    return all(m.step == 0 and m.worker is None and m.status == "active" for m in open_store(url).members(name))


# Lightning
def lightning_fit(url: str, optimizer: bool = True, name: str = "cb", **callback) -> tuple:
    import lightning as L
    from poptrain.lightning import PBTCallback

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.dropout = torch.nn.Dropout(0.1)

        def training_step(self, batch, i):
            return self.dropout(self.layer(batch[0])).pow(2).mean()

        def validation_step(self, batch, i):
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1) if optimizer else None

    net = Net()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=4)
    pbt = PBTCallback(url, name, monitor="val_loss", **callback)
    trainer = L.Trainer(callbacks=[pbt], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(net, loader, loader)
    return net, pbt


SPACE = {"lr": poptrain.LogUniform(1e-3, 1e-1), "dropout": poptrain.Uniform(0.0, 0.5)}


def test_lightning_refuses_a_hyperparameter_it_would_record_without_applying(tmp_path):
    url = experiment(tmp_path, {**SPACE, "learning_rate": poptrain.LogUniform(1e-3, 1e-1)})
    with pytest.raises(poptrain.PoptrainError, match=r"cannot apply 'dropout', 'learning_rate' .*hparam_attributes"):
        lightning_fit(url)
    assert untouched(url)


def test_lightning_refuses_a_module_without_an_optimiser(tmp_path):
    url = experiment(tmp_path, {"lr": poptrain.LogUniform(1e-3, 1e-1)})
    with pytest.raises(poptrain.PoptrainError, match="configures none: return one from configure_optimizers"):
        lightning_fit(url, optimizer=False)
    assert untouched(url)


def test_lightning_names_the_missing_part_of_an_attribute_path_before_training(tmp_path):
    url = experiment(tmp_path, SPACE)
    with pytest.raises(poptrain.PoptrainError, match=r"maps 'dropout' to 'drop\.p', but the model has no 'drop'"):
        lightning_fit(url, hparam_attributes={"dropout": "drop.p"})
    with pytest.raises(poptrain.PoptrainError, match=r"has no 'dropout\.rate'"):
        lightning_fit(url, hparam_attributes={"dropout": "dropout.rate"})
    assert untouched(url)


def test_lightning_applies_through_attributes_or_the_apply_hook(tmp_path):
    url = experiment(tmp_path, SPACE)
    net, _ = lightning_fit(url, hparam_attributes={"dropout": "dropout.p"})
    members = open_store(url).members("cb")
    assert all(m.status == "done" for m in members)
    assert net.dropout.p != 0.1 and net.dropout.p in {m.hparams["dropout"] for m in members}
    url = experiment(tmp_path, SPACE, name="hook")
    seen: list[float] = []

    def apply(hparams, module, trainer):
        module.dropout.p = hparams["dropout"]
        seen.append(hparams["dropout"])

    net, _ = lightning_fit(url.replace("cb", "hook"), name="hook", apply=apply)
    members = open_store(url).members("hook")
    assert all(m.status == "done" for m in members) and seen and net.dropout.p == seen[-1]
    assert set(seen) <= {m.initial_hparams["dropout"] for m in members} | {m.hparams["dropout"] for m in members}


# Hugging Face
def hf_train(url: str, name: str = "cb", monitor: str = "eval_loss", extra: tuple = (), **callback) -> tuple:
    import transformers
    from poptrain.transformers import PBTCallback

    config = transformers.BertConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                                     intermediate_size=4, max_position_embeddings=4, num_labels=2)
    data = [{"input_ids": torch.tensor([1, 2]), "labels": 0}] * 4
    args = transformers.TrainingArguments(output_dir=url[len("sqlite:///"):] + ".out", max_steps=8, eval_strategy="steps",
                                          eval_steps=2, save_strategy="no", report_to=[], use_cpu=True,
                                          disable_tqdm=True)
    model = transformers.BertForSequenceClassification(config)
    pbt = PBTCallback(url, name, monitor=monitor, **callback)
    transformers.Trainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                         callbacks=[pbt, *extra]).train()
    return model, pbt


HF_SPACE = {"learning_rate": poptrain.LogUniform(1e-4, 1e-2), "dropout": poptrain.Uniform(0.0, 0.5),
            "batch_size": poptrain.Choice([2, 4])}


def test_hugging_face_refuses_hyperparameters_it_cannot_apply_and_takes_them_through_apply(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = experiment(tmp_path, HF_SPACE)
    with pytest.raises(poptrain.PoptrainError, match=r"cannot apply 'batch_size', 'dropout' .*apply="):
        hf_train(url)
    assert untouched(url)
    applied: list[dict] = []
    model, pbt = hf_train(url, apply=lambda hparams, model, optimizer: applied.append(dict(hparams)))
    assert applied and all(set(h) == set(HF_SPACE) for h in applied)
    assert all(m.status == "done" for m in open_store(url).members("cb"))


def test_hugging_face_gives_its_member_back_when_the_monitor_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = experiment(tmp_path, {"learning_rate": poptrain.LogUniform(1e-4, 1e-2)})
    with pytest.raises(poptrain.PoptrainError, match="monitors 'eval_accuracy'"):
        hf_train(url, monitor="eval_accuracy")
    members = open_store(url).members("cb")
    assert all(m.worker is None for m in members)  # released while this process lives on
    assert poptrain.connect(url, "cb").ask(wait=False) is not None  # another loop takes it at once


def test_hugging_face_gives_its_member_back_after_train_raises_while_the_process_lives(tmp_path, monkeypatch):
    import time

    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = experiment(tmp_path, {"learning_rate": poptrain.LogUniform(1e-4, 1e-2)})

    class Boom(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:  # after the first evaluation: the member is held and has reported
                raise RuntimeError("out of memory, say")

    with pytest.raises(RuntimeError, match="out of memory"):
        hf_train(url, extra=[Boom()])
    store = open_store(url)
    deadline = time.monotonic() + 10
    while any(m.worker is not None for m in store.members("cb")):
        assert time.monotonic() < deadline, "the member stayed leased after train() raised"
        time.sleep(0.1)
    assert [m.step for m in store.members("cb")].count(1) == 1  # the interval it reported is kept

