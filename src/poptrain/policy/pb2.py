"""PB2's explore: a time-varying Gaussian-process bandit picks the hyperparameters of each copy.

Parker-Holder et al., "Provably Efficient Online Hyperparameter Optimization with Population-Based
Bandits" (NeurIPS 2020). The GP models the change in fitness over one interval as a function of
(time, hyperparameters), fitted on the whole population's recent intervals, with the time-varying
kernel k = (1 - epsilon)^(|t - t'| / 2) * RBF(x, x') so that old observations count less; a copy
takes the point that maximises the upper confidence bound mean + kappa * std at the next interval.

Continuous and integer hyperparameters are modelled in [0, 1] (log-uniform ones and `log = true`
integers in log space; integers are rounded back). Categorical ones (choice) are not modelled:
each is explored by the paper's perturb (`Perturb` with its defaults: resampled from its prior with
probability 1/4, otherwise moved to a neighbouring value). The points chosen for other copies of the same decision round (and,
asynchronously, members explored since their last report) enter the GP as pending observations at
their predicted mean, which removes their uncertainty, so two copies do not pick the same point.

scikit-learn is imported on the first decision that fits a GP, never by workers that do not use PB2.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..records import Hparams, Standings
from ..space import Choice, Domain, IntUniform, LogUniform, Uniform, validate_hparams
from .checks import check_int, check_number
from .perturb import Perturb
from .registry import HISTORY, ExploreStrategy, strategy

PERTURB = Perturb()  # the paper's perturb, for what the GP does not model (choices, and every value without history)


@strategy("explore", "pb2")
@dataclass(frozen=True)
class PB2(ExploreStrategy):
    """GP-UCB over (time, hyperparameters) fitted on the population's recent improvements (PB2)."""

    kappa: float = 2.0  # UCB = mean + kappa * std of the predicted improvement
    history: int = 16  # how many of each member's latest intervals are read
    max_points: int = 256  # the GP is fitted on at most this many of the newest intervals
    candidates: int = 512  # random points of the box the UCB is evaluated on (plus some near the source)
    reads: ClassVar[frozenset[str]] = frozenset({HISTORY})

    def __post_init__(self) -> None:
        object.__setattr__(self, "kappa", check_number("pb2", "kappa", self.kappa, 0.0, 100.0, low_open=False))
        object.__setattr__(self, "history", check_int("pb2", "history", self.history, 2, 10_000))
        object.__setattr__(self, "max_points", check_int("pb2", "max_points", self.max_points, 4, 4096))
        object.__setattr__(self, "candidates", check_int("pb2", "candidates", self.candidates, 1, 100_000))

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """Without history (a decision taken outside an engine): the paper's perturb (0.8 or 1.2, resample 1 in 4)."""
        values = validate_hparams(space, hparams, "pb2")
        return {name: PERTURB.draw(domain, values[name], rng)[0] for name, domain in space.items()}

    def operations(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> dict[str, str]:
        """What an explore did to each hyperparameter, for the report's counts: 'gp-ucb', or 'choice' (perturb or resample).

        The draws depend on the history the GP saw, so, unlike Perturb's, they are named, not replayed.
        """
        return {name: "choice" if isinstance(domain, Choice) else "gp-ucb" for name, domain in space.items()}

    def explore_batch(self, requests: Sequence[tuple[int, Hparams]], space: dict[str, Domain],
                      rngs: Sequence[np.random.Generator], standings: Standings) -> list[Hparams]:
        """New hyperparameters for each (member, source hparams), in order, each aware of the ones before."""
        if not requests:
            return []
        box = _Box(space)
        data = _observations(standings, box, self.max_points)
        if box.dims == 0 or data is None:
            return [self.explore(h, space, r) for (_, h), r in zip(requests, rngs)]
        from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

        # Matrices of a few hundred rows gain nothing from BLAS threads, and on a busy machine
        # threads that wait for each other make a 70 ms decision take a second.
        with threadpool_limits(1):
            return self._choose(requests, space, rngs, standings, box, data)

    def _choose(self, requests: Sequence[tuple[int, Hparams]], space: dict[str, Domain],
                rngs: Sequence[np.random.Generator], standings: Standings, box: "_Box",
                data: tuple[np.ndarray, np.ndarray, np.ndarray, int]) -> list[Hparams]:
        """GP-UCB picks for the requests in order, each believing the ones before it at their predicted mean."""
        times, x, y, now = data
        inputs = np.column_stack([times, x])
        gp = _fit(inputs, y)
        pending = _pending(standings, box, {m for m, _ in requests})
        chosen: list[Hparams] = []
        for (_, source), rng in zip(requests, rngs):
            values = validate_hparams(space, source, "pb2")
            if pending:
                gp, inputs, y = _believe(gp, inputs, y, now + 1, pending)
                pending = []
            candidates = box.candidates(box.encode(values), self.candidates, rng)
            at = np.column_stack([np.full(len(candidates), now + 1.0), candidates])
            mean, std = gp.predict(at, return_std=True)
            best = candidates[int(np.argmax(mean + self.kappa * std))]
            new = box.decode(best, values)
            for name, domain in space.items():  # categorical ones: as PBT's perturb, drawn after the GP's pick
                if isinstance(domain, Choice):
                    new[name] = PERTURB.draw(domain, values[name], rng)[0]
            chosen.append(new)
            pending.append(box.encode(new))
        return chosen


class _Box:
    """The modelled hyperparameters (all but choices) mapped to [0, 1], log ones in log space."""

    def __init__(self, space: dict[str, Domain]) -> None:
        self.space = space
        self.names = [n for n, d in space.items() if isinstance(d, (Uniform, IntUniform))]
        self.dims = len(self.names)

    def _bounds(self, domain: Domain) -> tuple[float, float, bool]:
        log = isinstance(domain, LogUniform) or (isinstance(domain, IntUniform) and domain.log)
        low, high = float(domain.low), float(domain.high)  # type: ignore[attr-defined]
        return (math.log(low), math.log(high), True) if log else (low, high, False)

    def encode(self, hparams: Any) -> np.ndarray:
        """The point in [0, 1]^dims of `hparams` (a constant dimension maps to 0)."""
        out = np.zeros(self.dims)
        for i, name in enumerate(self.names):
            low, high, log = self._bounds(self.space[name])
            v = float(hparams[name])
            v = math.log(v) if log else v
            out[i] = 0.0 if high == low else min(max((v - low) / (high - low), 0.0), 1.0)
        return out

    def decode(self, point: np.ndarray, base: Hparams) -> Hparams:
        """Hyperparameters at `point` (integers rounded, every value clipped to its bounds), others from `base`."""
        new = dict(base)
        for i, name in enumerate(self.names):
            domain = self.space[name]
            low, high, log = self._bounds(domain)
            v = low + float(np.clip(point[i], 0.0, 1.0)) * (high - low)
            v = math.exp(v) if log else v
            if isinstance(domain, IntUniform):
                new[name] = int(min(max(round(v), domain.low), domain.high))
            else:
                new[name] = float(min(max(v, domain.low), domain.high))  # type: ignore[attr-defined]
        return new

    def candidates(self, source: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` uniform points of the box, a quarter of as many near the source, and the source itself."""
        near = np.clip(source + rng.normal(0.0, 0.1, (max(1, n // 4), self.dims)), 0.0, 1.0)
        return np.vstack([rng.random((n, self.dims)), near, source[None, :]])


def _observations(standings: Standings, box: _Box, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """(times, points, improvements, now) of the newest `limit` intervals; None if fewer than 2.

    An interval counts when the member kept its hyperparameters over it: a change means it copied
    another member's weights in between, so its fitness before is not where the interval started.
    """
    rows = []
    now = 0
    for past in standings.history.values():
        for before, after in zip(past, past[1:]):
            now = max(now, after.step)
            if after.hparams != before.hparams or after.step <= before.step:
                continue
            change = (after.fitness - before.fitness) / (after.step - before.step)
            if math.isfinite(change):
                rows.append((after.step, box.encode(after.hparams), change))
    if len(rows) < 2:
        return None
    rows.sort(key=lambda r: r[0])
    rows = rows[-limit:]
    return (np.array([r[0] for r in rows], dtype=np.float64), np.array([r[1] for r in rows]),
            np.array([r[2] for r in rows], dtype=np.float64), now)


def _pending(standings: Standings, box: _Box, deciding: set[int]) -> list[np.ndarray]:
    """Points of members explored since their last report (not the ones deciding now)."""
    out = []
    for member, current in standings.current.items():
        past = standings.history.get(member, ())
        if member not in deciding and past and dict(current) != dict(past[-1].hparams):
            try:
                out.append(box.encode(current))
            except (KeyError, TypeError, ValueError):
                continue  # hyperparameters of another space (a changed spec): not a point of this one
    return out


FIT_POINTS = 96  # the kernel's parameters are fitted on at most this many points spread over the data


def _fit(inputs: np.ndarray, y: np.ndarray) -> Any:
    """A GP on (time, point) -> improvement, its kernel's parameters fitted by maximum likelihood.

    The likelihood is maximised on an even spread of at most FIT_POINTS of the points (each step
    of the optimiser costs a Cholesky factorisation), then the GP is conditioned on all of them.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor  # imported here: only PB2 pays for it
    from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * _time_varying()(0.1, 0.3) + WhiteKernel(0.1, (1e-5, 1.0))
    spread = np.unique(np.linspace(0, len(y) - 1, min(len(y), FIT_POINTS)).round().astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a parameter at its bound (e.g. no drift over time) is an answer, not a fault
        tuned = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=_short_lbfgs).fit(inputs[spread], y[spread])
        if len(spread) == len(y):
            return tuned
        return GaussianProcessRegressor(tuned.kernel_, normalize_y=True, optimizer=None).fit(inputs, y)


def _believe(gp: Any, inputs: np.ndarray, y: np.ndarray, time: float,
             pending: list[np.ndarray]) -> tuple[Any, np.ndarray, np.ndarray]:
    """The GP refitted (same kernel) with each pending point observed at its predicted mean, and its data."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    points = np.column_stack([np.full(len(pending), time), np.array(pending)])
    inputs, y = np.vstack([inputs, points]), np.concatenate([y, gp.predict(points)])
    believed = GaussianProcessRegressor(gp.kernel_, normalize_y=True, optimizer=None)
    return believed.fit(inputs, y), inputs, y


def _short_lbfgs(objective: Any, theta: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, float]:
    # A few dozen L-BFGS steps: enough for three kernel parameters, and a decision stays well under 100 ms.
    from scipy.optimize import minimize

    result = minimize(objective, theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": 30})
    return result.x, float(result.fun)


@functools.cache
def _time_varying() -> type:
    """The time-varying kernel class (built on first use, so that scikit-learn is imported only then)."""
    from sklearn.gaussian_process.kernels import Hyperparameter, Kernel

    class TimeVarying(Kernel):  # type: ignore[misc]
        """(1 - epsilon)^(|t - t'| / 2) * exp(-|x - x'|^2 / (2 l^2)); column 0 is time, the rest the point."""

        def __init__(self, epsilon: float = 0.1, length_scale: float = 0.3,
                     epsilon_bounds: tuple[float, float] = (1e-4, 0.5),
                     length_scale_bounds: tuple[float, float] = (0.02, 10.0)) -> None:
            self.epsilon, self.length_scale = epsilon, length_scale
            self.epsilon_bounds, self.length_scale_bounds = epsilon_bounds, length_scale_bounds

        @property
        def hyperparameter_epsilon(self) -> Any:
            return Hyperparameter("epsilon", "numeric", self.epsilon_bounds)

        @property
        def hyperparameter_length_scale(self) -> Any:
            return Hyperparameter("length_scale", "numeric", self.length_scale_bounds)

        def __call__(self, X: np.ndarray, Y: np.ndarray | None = None, eval_gradient: bool = False) -> Any:
            Z = X if Y is None else Y
            dt = np.abs(X[:, :1] - Z[:, :1].T)
            d2 = ((X[:, None, 1:] - Z[None, :, 1:]) ** 2).sum(-1)
            eps, ls = self.epsilon, self.length_scale
            k_time = np.exp(dt / 2 * math.log1p(-eps))
            k_point = np.exp(-d2 / (2 * ls * ls))
            K = k_time * k_point
            if not eval_gradient:
                return K
            # Gradients with respect to log(epsilon) and log(length_scale), as scikit-learn expects.
            d_eps = K * (dt / 2) * (-eps / (1 - eps))
            d_ls = K * d2 / (ls * ls)
            return K, np.dstack([d_eps, d_ls])

        def diag(self, X: np.ndarray) -> np.ndarray:
            return np.ones(len(X))

        def is_stationary(self) -> bool:
            return True

    return TimeVarying
