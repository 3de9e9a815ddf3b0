"""The framework callbacks' shared part: hyperparameters written into optimisers and modules, and their errors."""

from __future__ import annotations

import pytest
import torch

import poptrain
from poptrain.seat import Seat, write_attributes, write_param_groups


def test_a_new_learning_rate_keeps_the_schedules_factor_and_weight_decay_skips_undecayed_groups():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    matrices = [p for p in net.parameters() if p.ndim >= 2]
    vectors = [p for p in net.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.0}, {"params": vectors, "weight_decay": 0.0}], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    write_param_groups([(opt, [sched])], {"lr": 0.02, "weight_decay": 0.3, "betas": (0.8, 0.9), "dropout": 0.1})
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.01])  # the schedule's factor 0.5 stays
    assert sched.base_lrs == [0.02, 0.02] and opt.param_groups[0]["initial_lr"] == 0.02
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
    assert opt.param_groups[1]["betas"] == (0.8, 0.9) and "dropout" not in opt.param_groups[0]
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)  # the scheduler's next step keeps the new rate


def test_module_attributes_are_written_and_a_wrong_name_is_one_clear_error():
    net = torch.nn.Sequential(torch.nn.Dropout(0.5))
    write_attributes(net, {"dropout": "0.p"}, {"dropout": 0.1})
    assert net[0].p == 0.1
    with pytest.raises(poptrain.PoptrainError, match="not in the experiment's space"):
        write_attributes(net, {"drop": "0.p"}, {"dropout": 0.1})
    with pytest.raises(poptrain.PoptrainError, match="does not have"):
        write_attributes(net, {"dropout": "0.rate"}, {"dropout": 0.1})


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
