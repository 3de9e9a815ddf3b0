"""Binary tournament selection: copy one other member drawn at random if it scores better."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..records import Continue, Decision, Exploit, MemberView
from .ranking import clean_fitness, draw_other, standings_with
from .registry import ExploitStrategy, PopulationView, strategy


@strategy("exploit", "tournament")
@dataclass(frozen=True)
class Tournament(ExploitStrategy):
    """Binary tournament: copy one other member drawn uniformly if it is strictly better."""


    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision:
        """Exploit the drawn member if its fitness is finite and higher, else Continue."""
        standings = standings_with(member, population)
        other = draw_other(member, standings, rng)
        if other is None:
            return Continue()
        theirs, mine = float(standings.fitness[other]), clean_fitness(member.fitness)
        return Exploit(int(standings.ids[other])) if theirs > -math.inf and theirs > mine else Continue()
