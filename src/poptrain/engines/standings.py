"""How an engine reads the population's standings from the store for an exploit decision."""

from __future__ import annotations

from typing import Iterator, Mapping

from ..experiment import ExperimentSpec
from ..population import Standings, fitness
from ..store import Store


class RecentFitness(Mapping[int, tuple[float, ...]]):
    """A member's last few fitness values, read from the store only for the members a decision looks at.

    The t-test compares a member with one drawn peer; reading every member's history for that
    would make a decision cost grow with the population times the window.
    """

    def __init__(self, store: Store, name: str, exp: ExperimentSpec, at_step: int | None, ids: list[int]) -> None:
        self.store, self.name, self.exp, self.at_step = store, name, exp, at_step
        self.ids = ids
        self.cache: dict[int, tuple[float, ...]] = {}

    def __getitem__(self, member: int) -> tuple[float, ...]:
        if member not in self.cache:
            found = self.store.recent_scores(self.name, self.exp.policy.window, self.at_step, members=[member])
            if member not in found:
                raise KeyError(member)
            self.cache[member] = tuple(fitness(s, self.exp.mode) for s in found[member])
        return self.cache[member]

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


def read_standings(store: Store, name: str, exp: ExperimentSpec, at_step: int | None, everyone: bool = False) -> Standings:
    """The latest score of every live member (at `at_step` in synchronous mode), and their recent ones.

    Recent scores are read lazily for the members one decision looks at, or at once when
    `everyone` decides (a batched engine's generation).
    """
    ids, scores = store.scores(name, at_step)
    recent: Mapping[int, tuple[float, ...]] = {}
    policy = exp.policy
    if "recent" in policy.reads:  # the strategy declared it reads each member's recent scores
        if everyone:
            recent = {m: tuple(fitness(s, exp.mode) for s in history)
                      for m, history in store.recent_scores(name, policy.window, at_step).items()}
        else:
            recent = RecentFitness(store, name, exp, at_step, ids)
    return Standings.from_scores(ids, scores, exp.mode, recent, step=at_step)
