"""What the exploit strategies share: a member's fitness, the standings it ranks in, the one truncation rule, a uniform draw."""

from __future__ import annotations

import math
import numbers
from typing import Collection, Sequence, TypeVar

import numpy as np

from ..records import MemberView, Standings
from .registry import PopulationView

R = TypeVar("R", Sequence[int], np.ndarray)


def clean_fitness(x: float) -> float:
    """`x` as a float; a non-finite fitness (should already be -inf) ranks worst."""
    return float(x) if isinstance(x, numbers.Real) and math.isfinite(x) else -math.inf


def standings_with(member: MemberView, population: PopulationView) -> Standings:
    """The population in id order with `member`'s own (freshest) fitness in it.

    Id order makes decisions independent of the order a store returns the population in.
    """
    standings = population if isinstance(population, Standings) else Standings.of(population)
    return standings.including(member)


def draw_other(member: MemberView, standings: Standings, rng: np.random.Generator) -> int | None:
    """The position of one other member drawn uniformly, or None if `member` is alone."""
    n = len(standings)
    if n < 2:
        return None
    me = standings.index(member.id)
    drawn = int(rng.integers(n - 1))
    return drawn + 1 if me is not None and drawn >= me else drawn


def quantile(n: int, fraction: float) -> int:
    """q = max(1, ceil(n * fraction)), at most n // 2: the size of the top and of the bottom of `n` ranked members."""
    return min(max(1, math.ceil(round(n * fraction, 9))), n // 2)


def best_first(values: np.ndarray, shuffled: np.ndarray) -> np.ndarray:
    """Positions from the highest value to the lowest, ties in `shuffled` order (a random permutation breaks them)."""
    return shuffled[np.argsort(-values[shuffled], kind="stable")]


def top_and_bottom(ranked: R, fraction: float, among: Collection[int] | None = None) -> tuple[R, R]:
    """The top q and the bottom q of `ranked` (best first), q = quantile(len(ranked), fraction).

    With `among`, the bottom q are the last q of `ranked` that are in `among` (FIRE's PBT
    sub-population ranks its members against evaluators that never copy from it).
    """
    q = quantile(len(ranked), fraction)
    candidates = ranked if among is None else [m for m in ranked if m in among]
    return ranked[:q], candidates[len(candidates) - min(q, len(candidates)):]
