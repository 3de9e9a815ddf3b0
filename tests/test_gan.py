"""The GAN example: its Inception score, its members, and a toy PBT run on the serial and vectorized engines."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import digits_inception  # noqa: E402
import gan_digits  # noqa: E402
from mlp_digits import load_split  # noqa: E402
from poptrain import Every  # noqa: E402
from poptrain.experiment import load_spec  # noqa: E402

GOOD = {"lr_g": 2e-3, "lr_d": 2e-3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def numpy_inception_score(probabilities: np.ndarray) -> float:
    """exp(E_x KL(p(y|x) || p(y))) written out directly, from class probabilities (N x classes)."""
    marginal = probabilities.mean(axis=0)
    kl = (probabilities * (np.log(probabilities) - np.log(marginal))).sum(axis=1)
    return float(np.exp(kl.mean()))


def test_classifier_is_accurate_and_deterministic() -> None:
    assert digits_inception.classifier_accuracy() > 0.95
    first = [p.clone() for p in digits_inception.classifier().parameters()]
    digits_inception.classifier.cache_clear()
    try:
        for a, b in zip(first, digits_inception.classifier().parameters()):
            assert torch.equal(a, b)
    finally:
        digits_inception.classifier.cache_clear()


def test_real_digits_score_near_the_ten_classes_the_classifier_separates() -> None:
    score = digits_inception.real_data_score()
    assert 8.5 < score < 10.0
    # each class alone scores 1; two classes in equal numbers score about 2
    _, _, x, y = load_split()
    assert digits_inception.inception_score(x[y == 3]) < 1.3
    assert 1.7 < digits_inception.inception_score(torch.cat([x[y == 0][:40], x[y == 1][:40]])) < 2.3


def test_one_digit_repeated_scores_one() -> None:
    x = load_split()[2]
    assert digits_inception.inception_score(x[:1].repeat(300, 1)) == pytest.approx(1.0, abs=1e-4)


def test_a_collapsed_generator_scores_near_one() -> None:
    member = gan_digits.DigitsGAN(GOOD, 0)
    last = member.model["g"][2]
    with torch.no_grad():  # the generator ignores its noise and always draws the same real digit
        last.weight.zero_()
        last.bias.copy_(torch.atanh((load_split()[2][5] * 2 - 1).clamp(-0.99, 0.99)))
    assert member.evaluate()["inception_score"] == pytest.approx(1.0, abs=1e-3)


def test_score_matches_the_formula_computed_directly() -> None:
    generator = torch.Generator().manual_seed(1)
    _, _, x, _ = load_split()
    images = torch.cat([x[:150], torch.rand(100, 64, generator=generator), x[150:200] * 0.5])
    with torch.no_grad():
        probabilities = torch.softmax(digits_inception.classifier()(images).double(), dim=1).numpy()
    expected = numpy_inception_score(probabilities)
    assert 1.5 < expected < 10
    assert digits_inception.inception_score(images) == pytest.approx(expected, rel=1e-4)


def test_scoring_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(5)
    before = torch.get_rng_state()
    digits_inception.inception_score(load_split()[2][:50])
    assert torch.equal(before, torch.get_rng_state())


def test_members_are_reproducible_learn_and_round_trip() -> None:
    a, b = gan_digits.DigitsGAN(GOOD, 3), gan_digits.DigitsGAN(GOOD, 3)
    start = a.evaluate()["inception_score"]
    for _ in range(3):
        a.train()
        b.train()
    assert a.evaluate() == b.evaluate() and a.evaluate()["inception_score"] > start
    state, score = a.state_dict(), a.evaluate()
    a.train()
    copy = gan_digits.DigitsGAN({"lr_g": 1e-5, "lr_d": 1e-2}, 9)
    copy.load_state_dict(state)
    assert copy.evaluate() == score
    copy.set_hparams(GOOD)
    assert copy.g_optimizer.param_groups[0]["lr"] == 2e-3 and copy.optimizer.param_groups[0]["lr"] == 2e-3
    copy.train()
    assert copy.evaluate() == a.evaluate()  # same weights, both Adams, data order and rates: the same epoch


def test_the_batched_population_trains_as_the_members_do() -> None:
    hparams = [GOOD, {"lr_g": 1e-4, "lr_d": 1e-3}]
    population = gan_digits.DigitsGANPopulation(hparams, [0, 1])
    members = [gan_digits.DigitsGAN(h, s) for h, s in zip(hparams, [0, 1])]
    for _ in range(2):
        population.train()
        for m in members:
            m.train()
    scores = [s["inception_score"] for s in population.evaluate()]
    assert scores == pytest.approx([m.evaluate()["inception_score"] for m in members], rel=0.02)
    population.copy_members([1], [0])
    population.set_hparams(1, GOOD)
    state = population.state_dict()
    population.train()
    after = population.evaluate()
    assert after[0] == after[1]  # member 1 is now member 0: weights, both optimisers, data order
    population.load_state_dict(state)
    population.train()
    assert population.evaluate() == after
    with pytest.raises(ValueError, match="cannot vary 'beta1'"):
        population.set_hparams(0, {"beta1": 0.9})


@pytest.mark.parametrize("engine", ["serial", "vectorized"])
def test_toy_pbt_run_uses_the_tournament(tmp_path, engine: str) -> None:
    exp = load_spec(EXAMPLES / "gan_digits.toml", storage=f"sqlite:///{tmp_path}/gan.db", population=3, steps=4)
    assert exp.exploit.to_dict()["type"] == "tournament"
    exp.ready = Every(2)  # two ready points in four intervals
    result = exp.run(engine=engine)
    members = result.members()
    assert set(members.status) == {"done"} and len(members) == 3
    assert (members.score > 1.0).all() and (members.score < 10.0).all()
