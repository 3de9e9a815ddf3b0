"""Checkpoints hold data, never code: a crafted file with a matching checksum row runs nothing,
states round-trip without pickle, and keys from the store cannot reach outside the checkpoint root."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

import poptrain
from poptrain.cli import main
from poptrain.errors import CorruptCheckpoint, UnsafeCheckpoint, UnsupportedState
from poptrain.store import CheckpointStore, open_store
from poptrain.store.checkpoints import MAGIC, PICKLE_MAGIC
from poptrain.store.stateformat import SIZE
from trainables import Quadratic, StepLog

TESTS = str(Path(__file__).resolve().parent.parent)


@pytest.fixture(autouse=True)
def no_pickle_opt_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever the environment says, these tests start without the user's opt-in (and keep the logger as it was)."""
    monkeypatch.delenv("POPTRAIN_ALLOW_PICKLE", raising=False)
    log = logging.getLogger("poptrain")
    level, handlers = log.level, list(log.handlers)
    yield
    log.setLevel(level)
    log.handlers[:] = handlers


class Payload:
    """Unpickling it creates the directory `marker`: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def craft_pickle(marker: Path) -> tuple[bytes, str]:
    """A checkpoint in the old pickle format that runs code when loaded, and its checksum."""
    payload = pickle.dumps({"x": Payload(marker)})
    checksum = hashlib.sha256(payload).hexdigest()
    return PICKLE_MAGIC + checksum.encode() + b"\n" + payload, checksum


def craft_weights(marker: Path) -> tuple[bytes, str]:
    """A checkpoint in the current format whose tensor section is a code-running pickle."""
    evil = io.BytesIO()
    torch.save([Payload(marker)], evil)  # torch.save pickles anything: the load must refuse it
    section = evil.getvalue()
    header = json.dumps({"tree": {"tensor": 0}, "tensors": [0, len(section)], "arrays": []}).encode()
    payload = len(header).to_bytes(SIZE, "big") + header + section
    checksum = hashlib.sha256(payload).hexdigest()
    return MAGIC + checksum.encode() + b"\n" + payload, checksum


def plant(db: Path, checkpoints: str, name: str, member: int, crafted: tuple[bytes, str]) -> str:
    """What a colleague with the database's credentials can do: swap the file and fix its row's checksum."""
    data, checksum = crafted
    key = open_store(f"sqlite:///{db}").checkpoints(name, member)[0].key
    Path(CheckpointStore(checkpoints).path(key)).write_bytes(data)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE checkpoints SET checksum = ? WHERE key = ?", (checksum, key))
    return key


# round trips of the states poptrain's own trainables and helpers produce
def _mlp() -> Any:
    from mlp_digits import MLPDigits

    return MLPDigits({"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}, 3)


def _adam() -> Any:
    member = _mlp()
    member.optimizer = torch.optim.Adam(member.model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    return member


def _toy() -> Any:
    from toy_quadratic import ToyQuadratic

    return ToyQuadratic({"h0": 1.0, "h1": 0.0}, 0)


@pytest.mark.parametrize("make", [lambda: Quadratic({"lr": 0.1}, 1), lambda: StepLog({"lr": 0.1}, 1), _toy, _mlp, _adam],
                         ids=["quadratic", "steplog", "toy-numpy", "mlp-sgd", "mlp-adam"])
def test_trainable_states_round_trip_without_pickle(tmp_path, make):
    store = CheckpointStore(str(tmp_path))
    member = make()
    member.train()
    key = store.key_for("e", 0, 1)
    checksum = store.save(key, member.state_dict())
    assert Path(store.path(key)).read_bytes().startswith(MAGIC)
    copy = make()
    copy.load_state_dict(store.load(key, checksum))
    member.train()
    copy.train()  # the same weights, optimiser state and data order give the same next interval
    assert copy.evaluate() == member.evaluate()
    if hasattr(member, "optimizer"):
        loaded = store.load(key, checksum)["optimizer"]
        original = member.optimizer.state_dict()
        assert list(loaded["state"]) == list(original["state"]) and all(type(k) is int for k in loaded["state"])
        assert loaded["param_groups"][0].keys() == original["param_groups"][0].keys()
        if "betas" in original["param_groups"][0]:
            assert loaded["param_groups"][0]["betas"] == (0.8, 0.95)  # a tuple stays a tuple


def test_batched_population_round_trips_and_splits_per_member(tmp_path):
    from mlp_digits import MLPDigitsPopulation

    hparams = [{"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}, {"lr": 0.1, "momentum": 0.5, "weight_decay": 1e-3}]
    population = MLPDigitsPopulation(hparams, [1, 2])
    population.train()
    store = CheckpointStore(str(tmp_path))
    key = "e/population-s000001-abc.ckpt"
    checksum = store.save(key, population.state_dict())
    saved = population.state_dict()
    again = MLPDigitsPopulation(hparams, [7, 8])
    again.load_state_dict(store.load(key, checksum))
    restored = again.state_dict()
    assert all(torch.equal(saved["model"][k], restored["model"][k]) for k in saved["model"])
    assert all(torch.equal(a, b) for a, b in zip(saved["rng"], restored["rng"]))
    assert all(torch.equal(saved["optimizer"]["state"][n][k], restored["optimizer"]["state"][n][k])
               for n in saved["optimizer"]["state"] for k in saved["optimizer"]["state"][n])
    population.train()
    again.train()  # (the batched step after a restore rounds differently in the last bits, pickle or not)
    for mine, theirs in zip(again.evaluate(), population.evaluate()):
        assert mine == pytest.approx(theirs, rel=1e-5)
    part = store.load(f"{key}#member=1", checksum)
    assert torch.equal(part["model"]["0.weight"], saved["model"]["0.weight"][1])
    assert torch.equal(part["rng"], saved["rng"][1]) and "size" not in part


def test_plain_values_keep_their_types(tmp_path):
    store = CheckpointStore(str(tmp_path))
    state = {"ints": {0: 1, -2: 2**70}, "floats": [0.5, float("inf")], "t": (1, "a", None, True), "b": b"\x00\xff",
             "nested": [{"k": (1.5, [2])}], ("a", 1): "tuple key", "np": np.float32(1.5), "arr": np.arange(6).reshape(2, 3),
             "rng": torch.Generator().manual_seed(4).get_state(), "nan": float("nan")}
    loaded = store.load("e/x.ckpt", store.save("e/x.ckpt", state))
    assert loaded["ints"] == {0: 1, -2: 2**70} and loaded["t"] == (1, "a", None, True) and loaded["b"] == b"\x00\xff"
    assert loaded["nested"] == [{"k": (1.5, [2])}] and loaded[("a", 1)] == "tuple key"
    assert type(loaded["np"]) is np.float32 and np.array_equal(loaded["arr"], state["arr"])
    assert torch.equal(loaded["rng"], state["rng"]) and loaded["floats"] == [0.5, float("inf")]
    assert loaded["nan"] != loaded["nan"]


@pytest.mark.parametrize("value, kind", [(lambda: None, "function"), (object(), "object"),
                                         (np.array([object()]), "numpy array of Python objects"),
                                         ({1, 2}, "set")])
def test_a_state_that_needs_pickle_is_refused_naming_type_and_place(tmp_path, value, kind):
    store = CheckpointStore(str(tmp_path))
    with pytest.raises(UnsupportedState) as refused:
        store.save("e/x.ckpt", {"model": [1.0], "extra": {"handle": value}})
    assert "state['extra']['handle']" in str(refused.value) and kind in str(refused.value)
    assert not (tmp_path / "e").exists() or os.listdir(tmp_path / "e") == []  # nothing, not even a temporary file


def test_pickle_is_an_explicit_opt_in_of_the_user(tmp_path, monkeypatch):
    store = CheckpointStore(str(tmp_path))
    state = {"when": {1, 2}}  # a set needs pickle
    monkeypatch.setenv("POPTRAIN_ALLOW_PICKLE", "1")
    checksum = store.save("e/x.ckpt", state)
    assert Path(store.path("e/x.ckpt")).read_bytes().startswith(PICKLE_MAGIC)
    assert store.load("e/x.ckpt", checksum) == state
    monkeypatch.delenv("POPTRAIN_ALLOW_PICKLE")
    with pytest.raises(UnsafeCheckpoint, match="POPTRAIN_ALLOW_PICKLE=1"):
        store.load("e/x.ckpt", checksum)
    assert store.load("e/x.ckpt", checksum, allow_pickle=True) == state
    assert CheckpointStore(str(tmp_path), allow_pickle=True).load("e/x.ckpt", checksum) == state
    monkeypatch.setenv("POPTRAIN_ALLOW_PICKLE", "1")
    with pytest.raises(UnsafeCheckpoint):  # the keyword wins over the environment
        store.load("e/x.ckpt", checksum, allow_pickle=False)


def test_old_pickle_checkpoints_load_only_with_the_opt_in(tmp_path):
    payload = pickle.dumps({"x": 1.5})
    checksum = hashlib.sha256(payload).hexdigest()
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "old.ckpt").write_bytes(PICKLE_MAGIC + checksum.encode() + b"\n" + payload)
    store = CheckpointStore(str(tmp_path))
    with pytest.raises(UnsafeCheckpoint, match="written with pickle.*POPTRAIN_ALLOW_PICKLE=1"):
        store.load("e/old.ckpt", checksum)
    assert store.load("e/old.ckpt", checksum, allow_pickle=True) == {"x": 1.5}
    assert (tmp_path / "e" / "old.ckpt").exists()  # refused, not deleted: it is the user's to allow


# a crafted checkpoint with a matching checksum row runs nothing
def interrupted_run(tmp_path: Path, **kw: Any) -> poptrain.Experiment:
    """Two members that stop (as on Ctrl-C) after each has checkpoints, leaving the run to resume."""
    exp = poptrain.Experiment(**kw, name="x", trainable=Interrupts, space={"lr": poptrain.Uniform(0.01, 0.3)},
                              metric="score", population=2, steps=8, ready=poptrain.Every(2),
                              storage=f"sqlite:///{tmp_path}/s.db", paths=[TESTS], max_failures=0, engine="serial")
    Interrupts.calls = 0
    with pytest.raises(KeyboardInterrupt):
        exp.run()
    return exp


class Interrupts(Quadratic):
    """Quadratic, until the process's tenth interval, which is interrupted (a Ctrl-C)."""

    calls = 0

    def train(self) -> None:
        Interrupts.calls += 1
        if Interrupts.calls == 10:
            raise KeyboardInterrupt
        super().train()


@pytest.mark.parametrize("craft", [craft_pickle, craft_weights], ids=["pickle", "weights-only"])
def test_crafted_checkpoint_runs_no_code_on_load_state(tmp_path, craft):
    exp = interrupted_run(tmp_path)
    marker = tmp_path / "pwned"
    best = poptrain.load(exp.storage, "x").best()
    plant(tmp_path / "s.db", exp.checkpoints, "x", best.id, craft(marker))
    expected = UnsafeCheckpoint if craft is craft_pickle else CorruptCheckpoint
    with pytest.raises(expected):
        poptrain.load(exp.storage, "x").best().load_state()
    assert not marker.exists()


def test_crafted_pickle_checkpoint_stops_resume_with_one_error_and_runs_no_code(tmp_path, capsys):
    exp = interrupted_run(tmp_path)
    marker = tmp_path / "pwned"
    for member in (0, 1):
        plant(tmp_path / "s.db", exp.checkpoints, "x", member, craft_pickle(marker))
    with pytest.raises(UnsafeCheckpoint, match="POPTRAIN_ALLOW_PICKLE=1"):
        poptrain.resume(exp.storage, "x", engine="serial", force=True)
    assert main(["resume", "--storage", exp.storage, "--experiment", "x", "--engine", "serial", "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: checkpoint") and "POPTRAIN_ALLOW_PICKLE=1" in err[0], err
    assert not marker.exists()
    members = open_store(exp.storage).members("x")
    assert all(m.status == "active" and m.failures == 0 for m in members)  # refused up front: no member blamed


def test_crafted_weights_checkpoint_runs_no_code_on_resume_and_is_dropped_as_corrupt(tmp_path):
    exp = interrupted_run(tmp_path)
    marker = tmp_path / "pwned"
    for member in (0, 1):
        plant(tmp_path / "s.db", exp.checkpoints, "x", member, craft_weights(marker))
    result = poptrain.resume(exp.storage, "x", engine="serial", force=True)
    assert not marker.exists()
    assert all(m.step == 8 and m.status == "done" for m in result.store.members("x"))  # fell back and finished


def test_crafted_checkpoint_runs_no_code_on_exploit(tmp_path):
    from poptrain.engines.worker import Worker
    from poptrain.outcome import MemberError

    exp = interrupted_run(tmp_path)
    marker = tmp_path / "pwned"
    plant(tmp_path / "s.db", exp.checkpoints, "x", 1, craft_pickle(marker))
    store = open_store(exp.storage)
    worker = Worker(store, "x", "w", trainable=Interrupts)
    assert worker.connection._load_source(1, None) is None  # the exploit path reads the source's checkpoint: it copies nothing
    with pytest.raises(MemberError, match="POPTRAIN_ALLOW_PICKLE=1"):  # restoring the member itself: refused
        worker.connection._restore(store.member("x", 1))
    assert not marker.exists()


# keys and names confined to the checkpoint root
BAD_KEYS = ["../../victim.txt", "/tmp/victim.ckpt", "e/../../victim.ckpt", "..", "e/..", "e/../x.ckpt",
            "e/x/../../../victim.ckpt", "e\\..\\x.ckpt", "e/x.txt", "e/x.ckpt#member=-1", "", "e//x.ckpt", "e/.ckpt/x",
            "./x.ckpt"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_a_key_outside_the_root_is_refused_and_deletes_nothing(tmp_path, key):
    root = tmp_path / "a" / "b" / "ck"
    victim = tmp_path / "a" / "victim.txt"
    victim.parent.mkdir(parents=True)
    victim.write_text("keep me")
    store = CheckpointStore(str(root))
    store.delete(key)
    assert victim.read_text() == "keep me"
    with pytest.raises(CorruptCheckpoint, match="checkpoint key"):
        store.load(key, "0" * 64)
    with pytest.raises(ValueError):
        store.save(key, {"x": 1})
    assert not store.exists(key)


def test_a_link_out_of_the_root_is_not_followed_to_delete(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.ckpt").write_text("keep me")
    store = CheckpointStore(str(tmp_path / "ck"))
    os.symlink(outside, tmp_path / "ck" / "e")
    store.delete("e/x.ckpt")
    assert (outside / "x.ckpt").read_text() == "keep me"


def test_a_row_keyed_outside_the_root_survives_garbage_collection(tmp_path, caplog):
    victim = tmp_path / "a" / "victim.txt"
    exp = interrupted_run(tmp_path, checkpoints=str(tmp_path / "a" / "b" / "ck"))
    victim.write_text("keep me")
    assert os.path.normpath(os.path.join(exp.checkpoints, "../../victim.txt")) == str(victim)  # where the row aims
    with sqlite3.connect(tmp_path / "s.db") as con:  # an old row, the first that garbage collection drops
        con.execute("UPDATE checkpoints SET key = ? WHERE member = 0 AND seq = (SELECT MIN(seq) FROM checkpoints "
                    "WHERE member = 0)", ("../../victim.txt",))
    result = poptrain.resume(exp.storage, "x", engine="serial", force=True)
    assert all(m.step == 8 for m in result.store.members("x"))
    assert "../../victim.txt" not in {c.key for c in result.store.checkpoints("x", 0)}  # the row was dropped
    assert "not deleting checkpoint" in caplog.text  # garbage collection reached it, and refused
    assert victim.read_text() == "keep me"
