"""Hyperparameter domains: bounds, types, perturb/noise semantics, (de)serialisation, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poptrain.errors import SpecError
from poptrain.space import (
    Choice,
    Domain,
    IntUniform,
    LogUniform,
    Uniform,
    domain_from_dict,
    parse_space,
    sample_hparams,
    space_to_dict,
    validate_hparams,
)

# ---------------------------------------------------------------- strategies


@st.composite
def uniforms(draw):
    a = draw(st.floats(-1e6, 1e6))
    b = draw(st.floats(-1e6, 1e6))
    return Uniform(min(a, b), max(a, b))


@st.composite
def loguniforms(draw):
    a = draw(st.floats(1e-8, 1e6))
    b = draw(st.floats(1e-8, 1e6))
    return LogUniform(min(a, b), max(a, b))


@st.composite
def intuniforms(draw):
    log = draw(st.booleans())
    low = draw(st.integers(1, 1000) if log else st.integers(-1000, 1000))
    return IntUniform(low, low + draw(st.integers(0, 1000)), log=log)


choice_values = st.one_of(
    st.integers(-5, 5), st.text(alphabet="abcxyz", max_size=3), st.booleans(), st.floats(-10, 10), st.none()
)


@st.composite
def choices(draw):
    values = draw(st.lists(choice_values, min_size=1, max_size=6))
    unique: list = []
    for v in values:  # Choice rejects duplicates (1 == 1.0, but True != 1)
        if not any(v == u and isinstance(v, bool) == isinstance(u, bool) for u in unique):
            unique.append(v)
    return Choice(unique)


domains = st.one_of(uniforms(), loguniforms(), intuniforms(), choices())
factors = st.floats(0.05, 20.0)
seeds = st.integers(0, 2**32 - 1)


def assert_member(domain: Domain, value) -> None:
    """In bounds and of the domain's own Python type (JSON-serialisable)."""
    assert domain.contains(value), (domain, value)
    if isinstance(domain, (Uniform, LogUniform)):
        assert type(value) is float
        assert domain.low <= value <= domain.high
    elif isinstance(domain, IntUniform):
        assert type(value) is int
        assert domain.low <= value <= domain.high
    else:
        assert domain.index(value) >= 0
    json.dumps(value)


# ---------------------------------------------------------------- properties


@given(domains, seeds)
def test_sample_is_in_domain_and_typed(domain, seed):
    assert_member(domain, domain.sample(np.random.default_rng(seed)))


@given(domains, factors, seeds)
def test_perturb_stays_in_bounds_and_keeps_type(domain, factor, seed):
    rng = np.random.default_rng(seed)
    assert_member(domain, domain.perturb(domain.sample(rng), factor, rng))


@given(domains, st.floats(0.0, 100.0), seeds)
def test_noise_stays_in_bounds_and_keeps_type(domain, sigma, seed):
    rng = np.random.default_rng(seed)
    assert_member(domain, domain.noise(domain.sample(rng), sigma, rng))


@given(domains, seeds)
def test_sample_perturb_noise_are_deterministic_for_a_seed(domain, seed):
    def run():
        rng = np.random.default_rng(seed)
        v = domain.sample(rng)
        return [v, domain.perturb(v, 1.2, rng), domain.noise(v, 0.3, rng), domain.sample(rng)]

    assert run() == run()


@given(intuniforms(), st.floats(0.05, 20.0).filter(lambda f: f != 1.0), seeds)
def test_int_perturb_moves_at_least_one_step(domain, factor, seed):
    rng = np.random.default_rng(seed)
    value = domain.sample(rng)
    new = domain.perturb(value, factor, rng)
    assert type(new) is int and domain.low <= new <= domain.high
    if domain.low == domain.high:
        assert new == value
        return
    assert new != value
    up = factor > 1
    pushed_out = (up and value == domain.high) or (not up and value == domain.low)
    if pushed_out:
        assert new == value + (-1 if up else 1)  # one step back from the bound
    elif up:
        assert new >= value + 1
        if value >= 0:  # the multiplicative rule, with the one-step minimum, clipped
            assert new == min(max(round(value * factor), value + 1), domain.high)
    else:
        assert new <= value - 1
        if value >= 0:
            assert new == max(min(round(value * factor), value - 1), domain.low)


@given(choices(), factors, seeds)
def test_choice_perturb_moves_to_a_neighbour(domain, factor, seed):
    rng = np.random.default_rng(seed)
    value = domain.sample(rng)
    i, j = domain.index(value), domain.index(domain.perturb(value, factor, rng))
    n = len(domain.values)
    if n == 1 or factor == 1.0:
        assert j == i
    elif factor > 1:
        assert j == (i + 1 if i + 1 < n else i - 1)
    else:
        assert j == (i - 1 if i > 0 else i + 1)


@given(st.one_of(uniforms(), loguniforms()), factors, seeds)
def test_continuous_perturb_is_value_times_factor_clipped(domain, factor, seed):
    rng = np.random.default_rng(seed)
    value = domain.sample(rng)
    assert domain.perturb(value, factor, rng) == min(max(value * factor, domain.low), domain.high)


@given(domains)
def test_to_dict_round_trips_through_json(domain):
    data = json.loads(json.dumps(domain.to_dict()))
    assert domain_from_dict("x", data) == domain


# ---------------------------------------------------------------- examples


@pytest.mark.parametrize(
    "domain, value, factor, expected",
    [
        (IntUniform(1, 10), 1, 0.8, 2),  # int(1*0.8) would collapse: bounce one step up
        (IntUniform(0, 10), 1, 0.8, 0),
        (IntUniform(0, 10), 1, 1.2, 2),  # round(1.2) == 1: still one step
        (IntUniform(1, 10), 10, 1.2, 9),
        (IntUniform(0, 100), 50, 1.2, 60),
        (IntUniform(0, 100), 50, 0.8, 40),
        (IntUniform(0, 100), 95, 1.2, 100),  # clipped, but it moved
        (IntUniform(-100, 0), -50, 1.2, -40),  # negative: |value| scales the step, factor gives the way
        (IntUniform(1, 1024, log=True), 1, 1.2, 2),
        (IntUniform(1, 1024, log=True), 512, 1.2, 614),
        (IntUniform(3, 3), 3, 1.2, 3),
        (IntUniform(0, 10), 5, 1.0, 5),
        (Uniform(0.0, 1.0), 0.0, 1.2, 0.0),  # a zero stays zero: multiplicative
        (Uniform(0.0, 1.0), 0.9, 1.2, 1.0),
        (Uniform(-1.0, 1.0), -0.5, 1.2, -0.6),
        (LogUniform(1e-3, 1.0), 0.5, 0.8, 0.4),
        (LogUniform(1e-3, 1.0), 0.9, 1.2, 1.0),
        (Choice(["a", "b", "c"]), "a", 1.2, "b"),
        (Choice(["a", "b", "c"]), "c", 1.2, "b"),  # bounce at the end
        (Choice(["a", "b", "c"]), "a", 0.8, "b"),
        (Choice(["a", "b", "c"]), "b", 0.8, "a"),
        (Choice(["only"]), "only", 1.2, "only"),
    ],
)
def test_perturb_examples(domain, value, factor, expected):
    got = domain.perturb(value, factor, np.random.default_rng(0))
    assert got == pytest.approx(expected) if isinstance(expected, float) else got == expected
    assert type(got) is type(expected)


def test_uniform_noise_moves_a_zero_with_the_given_scale():
    # The paper's toy needs this: multiplicative perturb keeps 0 at 0, additive noise does not.
    rng = np.random.default_rng(1)
    d = Uniform(-10.0, 10.0)
    moved = np.array([d.noise(0.0, 0.1, rng) for _ in range(4000)])
    assert abs(moved.mean()) < 0.01
    assert moved.std() == pytest.approx(0.1, rel=0.05)
    clipped = [Uniform(0.0, 1.0).noise(0.0, 0.1, rng) for _ in range(1000)]
    assert min(clipped) == 0.0 and 0.3 < np.mean(np.array(clipped) > 0) < 0.7


def test_loguniform_noise_is_in_log_units():
    rng = np.random.default_rng(2)
    d = LogUniform(1e-6, 1e6)
    logs = np.log([d.noise(1.0, 0.5, rng) for _ in range(4000)])
    assert abs(logs.mean()) < 0.03 and logs.std() == pytest.approx(0.5, rel=0.05)


def test_int_noise_rounds_and_log_int_noise_is_relative():
    rng = np.random.default_rng(3)
    lin = [IntUniform(0, 1000).noise(500, 1.0, rng) for _ in range(2000)]
    assert all(type(v) is int for v in lin) and 495 <= min(lin) and max(lin) <= 505
    assert np.std(lin) == pytest.approx(1.0, rel=0.15)
    log = [IntUniform(1, 10**6, log=True).noise(1000, 0.1, rng) for _ in range(2000)]
    assert np.std(np.log(log)) == pytest.approx(0.1, rel=0.15)


def test_choice_noise_moves_by_rounded_gaussian_steps():
    rng = np.random.default_rng(4)
    d = Choice(list(range(100)))
    assert all(d.noise(50, 0.1, rng) == 50 for _ in range(200))  # |N(0, .1)| < .5 almost surely
    steps = np.array([d.noise(50, 3.0, rng) - 50 for _ in range(3000)])
    assert abs(steps.mean()) < 0.3 and steps.std() == pytest.approx(3.0, rel=0.1)
    assert {d.noise(0, 50.0, rng) for _ in range(100)} <= set(range(100))


def test_samples_follow_the_prior():
    rng = np.random.default_rng(5)
    logs = [LogUniform(1e-4, 1.0).sample(rng) for _ in range(4000)]
    assert np.mean(np.array(logs) < 1e-2) == pytest.approx(0.5, abs=0.04)  # half the decades
    ints = [IntUniform(1, 3).sample(rng) for _ in range(600)]
    assert set(ints) == {1, 2, 3}  # inclusive at both ends
    log_ints = np.array([IntUniform(1, 1000, log=True).sample(rng) for _ in range(4000)])
    assert log_ints.min() == 1 and log_ints.max() <= 1000
    assert 0.25 < np.mean(log_ints <= 10) < 0.45  # uniform would give 0.01
    choice = [Choice(["a", "b"]).sample(rng) for _ in range(400)]
    assert 150 < choice.count("a") < 250


def test_to_dict_formats():
    assert LogUniform(0.001, 1.0).to_dict() == {"type": "loguniform", "low": 0.001, "high": 1.0}
    assert Uniform(0, 1).to_dict() == {"type": "uniform", "low": 0.0, "high": 1.0}
    assert IntUniform(1, 10).to_dict() == {"type": "int", "low": 1, "high": 10, "log": False}
    assert Choice(("a", 1)).to_dict() == {"type": "choice", "values": ["a", 1]}


def test_contains_respects_type_and_bounds():
    assert Uniform(0, 1).contains(0.5) and Uniform(0, 1).contains(1) and not Uniform(0, 1).contains(1.5)
    assert not Uniform(0, 1).contains(float("nan")) and not Uniform(0, 1).contains("0.5")
    assert not Uniform(0, 1).contains(True)
    assert IntUniform(0, 5).contains(3) and IntUniform(0, 5).contains(3.0)
    assert not IntUniform(0, 5).contains(2.5) and not IntUniform(0, 5).contains(6)
    assert Choice([1, "a"]).contains("a") and not Choice([1, "a"]).contains(True)
    assert Choice([True, 1]).index(1) == 1 and Choice([True, 1]).index(True) == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Uniform(1.0, 0.1), "low 1.0 > high 0.1"),
        (lambda: Uniform(0.0, math.inf), "high must be finite"),
        (lambda: Uniform(math.nan, 1.0), "low must be finite"),
        (lambda: Uniform("0", 1.0), "low must be a number"),
        (lambda: LogUniform(0.0, 1.0), "low > 0"),
        (lambda: LogUniform(-1.0, 1.0), "low > 0"),
        (lambda: IntUniform(1.5, 3), "low must be an integer"),
        (lambda: IntUniform(1, 3.0), "high must be an integer"),
        (lambda: IntUniform(True, 3), "low must be an integer"),
        (lambda: IntUniform(5, 3), "low 5 > high 3"),
        (lambda: IntUniform(0, 3, log=True), "low >= 1"),
        (lambda: Choice([]), "at least one"),
        (lambda: Choice("abc"), "must be a list"),
        (lambda: Choice([object()]), "not JSON-serialisable"),
        (lambda: Choice([1, 1.0]), "appears twice"),
    ],
)
def test_constructor_validation(make, message):
    with pytest.raises(SpecError, match=message):
        make()


def test_perturb_rejects_values_outside_and_bad_factors():
    with pytest.raises(SpecError, match="outside"):
        IntUniform(0, 5).perturb(9, 1.2, np.random.default_rng(0))
    with pytest.raises(SpecError, match="outside"):
        Choice(["a"]).perturb("b", 1.2, np.random.default_rng(0))
    with pytest.raises(SpecError, match="factor"):
        Uniform(0, 1).perturb(0.5, -1.0, np.random.default_rng(0))
    with pytest.raises(SpecError, match="sigma"):
        Uniform(0, 1).noise(0.5, math.nan, np.random.default_rng(0))


# ---------------------------------------------------------------- the space


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "logunifrom", "low": 0.1, "high": 1.0},
         "hyperparameter 'lr': unknown type 'logunifrom' (known: choice, int, loguniform, uniform)"),
        ({"type": "loguniform", "low": 1.0, "high": 0.1}, "hyperparameter 'lr': low 1.0 > high 0.1"),
        ({"type": "loguniform", "low": 0.1}, "hyperparameter 'lr': loguniform needs 'high'"),
        ({"type": "uniform", "low": 0, "high": 1, "hgih": 2}, "hyperparameter 'lr': unknown key 'hgih'"),
        ({"type": "int", "low": 1, "high": "10"}, "hyperparameter 'lr': high must be an integer"),
        ({"type": "int", "low": 1, "high": 10, "log": "yes"}, "hyperparameter 'lr': log must be"),
        ({"type": "choice", "values": []}, "hyperparameter 'lr': choice needs at least one"),
        ({"low": 0, "high": 1}, "hyperparameter 'lr': missing 'type'"),
        (0.1, "hyperparameter 'lr': expected a table"),
    ],
)
def test_domain_from_dict_errors_name_the_hyperparameter(spec, message):
    with pytest.raises(SpecError) as info:
        domain_from_dict("lr", spec)
    assert message in str(info.value)


def test_domain_from_dict_accepts_domains_and_defaults():
    d = LogUniform(1e-3, 1.0)
    assert domain_from_dict("lr", d) is d
    assert domain_from_dict("n", {"type": "int", "low": 1, "high": 4}) == IntUniform(1, 4, log=False)


def test_parse_space_round_trips_and_samples_deterministically():
    spec = {
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "momentum": Uniform(0.0, 0.99),
        "layers": {"type": "int", "low": 1, "high": 8, "log": True},
        "act": {"type": "choice", "values": ["relu", "tanh"]},
    }
    space = parse_space(spec)
    assert list(space) == ["lr", "momentum", "layers", "act"]
    data = json.loads(json.dumps(space_to_dict(space)))
    assert parse_space(data) == space
    a = sample_hparams(space, np.random.default_rng(7))
    assert a == sample_hparams(space, np.random.default_rng(7))
    assert a != sample_hparams(space, np.random.default_rng(8))
    assert validate_hparams(space, a, "initial[0]") == a


@pytest.mark.parametrize("bad, message", [({}, "empty"), ({"": Uniform(0, 1)}, "non-empty strings"),
                                          ({3: Uniform(0, 1)}, "non-empty strings"), ([1], "table")])
def test_parse_space_errors(bad, message):
    with pytest.raises(SpecError, match=message):
        parse_space(bad)


def test_validate_hparams_errors_and_cleaning():
    space = parse_space({"lr": LogUniform(1e-3, 1.0), "n": IntUniform(1, 10), "act": Choice(["a", "b"])})
    clean = validate_hparams(space, {"lr": np.float64(0.01), "n": np.int64(3), "act": "b"}, "initial[2]")
    assert clean == {"lr": 0.01, "n": 3, "act": "b"}
    assert type(clean["lr"]) is float and type(clean["n"]) is int
    assert type(validate_hparams(space, {"lr": 0.1, "n": 4.0, "act": "a"}, "x")["n"]) is int
    with pytest.raises(SpecError) as info:
        validate_hparams(space, {"lr": 0.1, "n": 3, "act": "a", "momentum": 0.9}, "initial[2]")
    assert str(info.value).startswith("initial[2]: ")
    assert "'momentum'" in str(info.value) and "lr, n, act" in str(info.value)
    with pytest.raises(SpecError, match=r"initial\[2\]: missing hyperparameter 'n'"):
        validate_hparams(space, {"lr": 0.1, "act": "a"}, "initial[2]")
    with pytest.raises(SpecError, match=r"initial\[2\]: hyperparameter 'lr' = 5.0 is outside"):
        validate_hparams(space, {"lr": 5.0, "n": 3, "act": "a"}, "initial[2]")
    with pytest.raises(SpecError, match="hyperparameter 'act' = 'c' is outside"):
        validate_hparams(space, {"lr": 0.1, "n": 3, "act": "c"}, "")
    with pytest.raises(SpecError, match="hyperparameter 'n' = 2.5 is outside"):
        validate_hparams(space, {"lr": 0.1, "n": 2.5, "act": "a"}, "x")


@settings(max_examples=50)
@given(st.dictionaries(st.text(alphabet="abcdefgh_", min_size=1, max_size=5), domains, min_size=1, max_size=4), seeds)
def test_sampled_hparams_validate_and_serialise(spec, seed):
    space = parse_space(spec)
    hparams = sample_hparams(space, np.random.default_rng(seed))
    assert validate_hparams(space, hparams, "sample") == hparams
    assert json.loads(json.dumps(hparams)) == hparams
