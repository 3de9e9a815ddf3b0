"""The two examples: the paper's toy reproduces its numbers, the digits MLP is seeded and learns."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from poptrain.trainable import resolve_trainable

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> tuple[dict, type]:
    """An example's TOML spec and the trainable class it names, resolved from the examples folder."""
    spec = tomllib.loads((EXAMPLES / f"{name}.toml").read_text())
    return spec, resolve_trainable(spec["trainable"], [str(EXAMPLES)])


@pytest.fixture(scope="module")
def toy() -> tuple[dict, type]:
    return example("toy_quadratic")


@pytest.fixture(scope="module")
def mlp() -> tuple[dict, type]:
    return example("mlp_digits")


def trained(cls: type, hparams: dict, seed: int, steps: int):
    """A member of `cls` after `steps` calls of train()."""
    member = cls(hparams, seed)
    for _ in range(steps):
        member.train()
    return member


@pytest.mark.parametrize("index", [0, 1])
def test_toy_without_exploit_plateaus_on_one_coordinate(toy: tuple[dict, type], index: int) -> None:
    spec, cls = toy
    h = spec["initial"][index]
    member = cls(h, 0)
    assert member.evaluate() == {"q": pytest.approx(1.2 - 2 * 0.81)}
    for _ in range(200):
        member.train()
    assert member.evaluate()["q"] == pytest.approx(0.3897, abs=1e-4)  # PBT.md: 200 steps, no exploit
    for _ in range(200):
        member.train()
    q = member.evaluate()["q"]
    assert q == pytest.approx(1.2 - 0.81, abs=1e-4)  # the plateau: the other coordinate never moves
    assert member.theta[1 - index] == 0.9


def test_toy_q_is_at_its_optimum_at_theta_zero(toy: tuple[dict, type]) -> None:
    _, cls = toy
    member = cls({"h0": 0.5, "h1": 0.5}, 0)
    member.load_state_dict({"theta": np.zeros(2)})
    assert member.evaluate() == {"q": 1.2}


def test_toy_state_is_a_copy_and_exploit_lets_both_coordinates_move(toy: tuple[dict, type]) -> None:
    _, cls = toy
    a, b = cls({"h0": 1.0, "h1": 0.0}, 0), cls({"h0": 0.0, "h1": 1.0}, 1)
    for _ in range(50):
        a.train()
    state = a.state_dict()
    a.train()
    assert state["theta"][0] != a.theta[0]  # training after the snapshot did not move it
    b.load_state_dict(state)
    b.set_hparams({"h0": 0.0, "h1": 1.0})
    b.train()
    assert state["theta"][1] == 0.9 and b.theta[1] < 0.9  # b moved its copy, not the snapshot
    assert b.evaluate()["q"] > a.evaluate()["q"]


def test_example_specs_name_the_paper_settings(toy: tuple[dict, type], mlp: tuple[dict, type]) -> None:
    spec, _ = toy
    assert (spec["population"], spec["steps"], spec["ready"]["intervals"]) == (2, 200, 4)
    assert spec["explore"] == {"type": "noise", "sigma": 0.1}
    spec, _ = mlp
    assert set(spec["space"]) == {"lr", "momentum", "weight_decay"} and spec["metric"] == "accuracy"


GOOD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


def test_mlp_members_are_reproducible_from_their_seed(mlp: tuple[dict, type]) -> None:
    _, cls = mlp
    a, b, c = (trained(cls, GOOD, seed, 2) for seed in (3, 3, 4))
    assert a.evaluate() == b.evaluate()
    assert a.evaluate()["accuracy"] != c.evaluate()["accuracy"]


def test_mlp_good_member_learns_and_bad_one_does_not(mlp: tuple[dict, type]) -> None:
    _, cls = mlp
    good = trained(cls, GOOD, 0, 10).evaluate()
    assert good["accuracy"] > 0.9 and good["loss"] < 0.3
    slow = trained(cls, {"lr": 1e-3, "momentum": 0.0, "weight_decay": 1e-6}, 0, 3).evaluate()
    assert slow["accuracy"] < 0.5  # the space's low corner is a member PBT has to rescue


def test_mlp_state_round_trip_reproduces_evaluate(mlp: tuple[dict, type]) -> None:
    _, cls = mlp
    member = trained(cls, GOOD, 0, 2)
    state, score = member.state_dict(), member.evaluate()
    member.train()
    assert member.evaluate() != score
    copy = cls({"lr": 0.01, "momentum": 0.0, "weight_decay": 1e-6}, 7)
    copy.load_state_dict(state)
    assert copy.evaluate() == score
    copy.set_hparams(GOOD)  # same weights, optimiser state, data order and hparams: same next epoch
    member.load_state_dict(state)
    member.train()
    copy.train()
    assert copy.evaluate() == member.evaluate()


def test_quickstart_runs_through_the_public_api(tmp_path, capsys):
    import quickstart

    result = quickstart.main(engine="serial", steps=6, population=4, storage=f"sqlite:///{tmp_path}/q.db")
    out = capsys.readouterr().out
    assert f"best member {result.best().id}" in out and "its learning rate over training" in out
    assert set(result.members().status) == {"done"}


def test_digits_are_scikit_learns_data_and_split_without_importing_it(mlp: tuple[dict, type]) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    example = sys.modules[mlp[1].__module__]
    x, y = load_digits(return_X_y=True)
    read_x, read_y = example.read_digits()
    np.testing.assert_array_equal(read_x, x)
    np.testing.assert_array_equal(read_y, y)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, stratify=y, random_state=0)
    for ours, theirs in zip(example.load_split(), (x_train, y_train, x_val, y_val)):
        np.testing.assert_array_equal(ours.numpy(), np.asarray(theirs, dtype=ours.numpy().dtype))


@pytest.fixture(scope="module")
def noisy() -> tuple[dict, type]:
    return example("noisy_digits")


def test_demo_job_has_half_its_training_labels_wrong_and_true_validation_labels(noisy, mlp) -> None:
    spec, cls = noisy
    assert spec["trainable"] == "noisy_digits:NoisyDigits" and set(spec["space"]) == {"lr"}
    x, y, x_val, y_val = cls.split()
    clean = sys.modules[mlp[1].__module__].load_split()
    wrong = (y != clean[1]).float().mean().item()
    assert 0.45 < wrong < 0.55  # NOISE = 0.5 of the labels moved to another class (never to their own)
    assert x.equal(clean[0]) and x_val.equal(clean[2]) and y_val.equal(clean[3])
    member = cls({"lr": 0.1}, 0)
    group = member.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0, 0)  # plain SGD: PBT explores lr only
    member.set_hparams({"lr": 0.05})
    assert member.optimizer.param_groups[0]["lr"] == 0.05


def test_demo_job_runs_with_its_random_search_baseline(tmp_path) -> None:
    from checks import cli

    url = f"sqlite:///{tmp_path}/demo.db"
    code, out, err = cli("run", EXAMPLES / "noisy_digits.toml", "--storage", url, "--engine", "serial", "--quiet",
                         "--population", "4", "--steps", "4", "--baseline")
    assert code == 0, err
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in out.splitlines() if line.startswith("│") and ("PBT" in line or "random search" in line)}
    assert set(rows) == {"PBT", "random search (no exploit)"}
    for best, mean, worst, _, intervals in rows.values():
        assert 0 < float(worst) <= float(mean) <= float(best) <= 1 and intervals == "16"
    assert int(rows["PBT"][3]) > 0 and rows["random search (no exploit)"][3] == "0"
