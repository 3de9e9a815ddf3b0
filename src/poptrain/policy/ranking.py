"""What the exploit strategies share: a member's fitness, the standings it ranks in, a uniform draw."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..population import MemberView, Standings
from .registry import PopulationView


def fitness(x: float) -> float:
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
