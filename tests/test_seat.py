"""The framework callbacks' shared part: a seat's members, hyperparameters written into modules, and their errors."""

from __future__ import annotations

import pytest
import torch

import poptrain
from poptrain.seat import Seat, write_attributes


def test_module_attributes_are_written_and_a_wrong_name_is_one_clear_error():
    net = torch.nn.Sequential(torch.nn.Dropout(0.5))
    write_attributes(net, {"dropout": "0.p"}, {"dropout": 0.1})
    assert net[0].p == 0.1
    with pytest.raises(poptrain.PoptrainError, match="not in the experiment's space"):
        write_attributes(net, {"drop": "0.p"}, {"dropout": 0.1})
    with pytest.raises(poptrain.PoptrainError, match="the model has no '0.rate'"):
        write_attributes(net, {"dropout": "0.rate"}, {"dropout": 0.1})
    with pytest.raises(poptrain.PoptrainError, match="the model has no '1': name an existing attribute"):
        write_attributes(net, {"dropout": "1.p"}, {"dropout": 0.1})  # a missing parent, not an AttributeError


def test_a_seat_takes_members_until_none_is_left_and_a_fresh_member_starts_from_the_initial_state(tmp_path):
    url = f"sqlite:///{tmp_path}/seat.db"
    poptrain.Experiment(name="seat", trainable=None, space={"lr": poptrain.Uniform(0.0, 1.0)}, population=2, steps=2,
                        ready=poptrain.Every(1), exploit=None, storage=url).create()
    live = {"w": torch.zeros(1)}
    loaded = []

    def write(state, hparams):
        live["w"] = state["w"].clone()
        loaded.append(float(live["w"]))

    seat = Seat(url, "seat", lambda: {"w": live["w"]}, write)
    first = seat.join()
    told = 0
    while seat.member is not None:
        live["w"] = live["w"] + 1
        seat.tell(float(live["w"]))
        told += 1
    seat.close()
    assert first is not None and told == 4
    assert loaded == [0.0, 0.0]  # each member started from the state the trainer began with


def test_a_reduction_tell_does_not_know_is_one_clear_error_before_anything_is_taken():
    from poptrain.lightning import PBTCallback

    with pytest.raises(poptrain.PoptrainError, match=r"reduce='median'.*use one of \['max', 'mean', 'min'\]"):
        PBTCallback("sqlite:///unused.db", "x", monitor="val_loss", reduce="median")
    with pytest.raises(poptrain.PoptrainError, match="reduce='median'"):
        Seat("sqlite:///unused.db", "x", dict, lambda state, hparams: None, reduce="median")
