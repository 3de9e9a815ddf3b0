"""The paper's t-test selection: copy a random other member whose recent scores are significantly better."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from ..records import Continue, Decision, Exploit, MemberView
from .checks import check_int, check_number
from .ranking import clean_fitness, draw_other, standings_with
from .registry import RECENT, ExploitStrategy, PopulationView, strategy


@strategy("exploit", "ttest")
@dataclass(frozen=True)
class TTest(ExploitStrategy):
    """Copy one other member drawn uniformly if Welch's t-test on the last `window` scores says it is better."""

    window: int = 10
    alpha: float = 0.05
    reads: ClassVar[frozenset[str]] = frozenset({RECENT})  # each member's last `window` scores

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", check_int("ttest", "window", self.window, 2))
        object.__setattr__(self, "alpha", check_number("ttest", "alpha", self.alpha, 0.0, 1.0))

    def p_value(self, theirs: Sequence[float], mine: Sequence[float]) -> float:
        """Welch's two-sided p-value for the two samples (NaN when undefined, e.g. both constant)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            from scipy import stats  # imported here: it costs most of poptrain's import time

            return float(stats.ttest_ind(theirs, mine, equal_var=False).pvalue)

    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision:
        """Exploit the drawn member if its recent mean is higher and p < alpha, else Continue.

        The drawn member needs >= 2 recent values, all finite, and a finite fitness. A member
        whose own last fitness is non-finite is worst and copies any such member; otherwise
        its non-finite recent values are dropped and it needs >= 2 finite ones.
        """
        standings = standings_with(member, population)
        at = draw_other(member, standings, rng)
        if at is None:
            return Continue()
        other = int(standings.ids[at])
        theirs = [float(x) for x in tuple(standings.recent.get(other, ()))[-self.window:]]
        if len(theirs) < 2 or not all(math.isfinite(x) for x in theirs) or standings.fitness[at] == -math.inf:
            return Continue()
        recent = member.recent[-self.window:]
        if clean_fitness(member.fitness) == -math.inf or (recent and clean_fitness(recent[-1]) == -math.inf):
            return Exploit(other)
        mine = [float(x) for x in recent if clean_fitness(x) > -math.inf]
        if len(mine) < 2 or not np.mean(theirs) > np.mean(mine):
            return Continue()
        return Exploit(other) if self.p_value(theirs, mine) < self.alpha else Continue()
