"""How a decision reads the population's standings from the store (ask/tell and the engines alike)."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Mapping

from .spec import ExperimentSpec
from .records import Interval, Standings, fitness
from .store import Store


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
    """The latest score of every live member (at `at_step` in synchronous mode), and what the policy reads.

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
    standings = Standings.from_scores(ids, scores, exp.mode, recent, step=at_step)
    if policy.reads & {"history", "metrics"}:
        standings = with_history(store, name, exp, at_step, standings)
    return standings


def with_history(store: Store, name: str, exp: ExperimentSpec, at_step: int | None, standings: Standings) -> Standings:
    """`standings` with what a strategy reading "history" or "metrics" declared: one bounded read of recent reports.

    History is each live member's last `policy.history` intervals (a GP over the whole run would
    grow without bound) and its current hyperparameters; metrics are each member's latest numbers.
    """
    policy = exp.policy
    reads = policy.reads
    window = policy.history if "history" in reads else 1
    history: dict[int, list[Interval]] = {}
    metrics: dict[int, dict[str, float]] = {}
    for r in store.recent_reports(name, window, at_step):
        history.setdefault(r.member, []).append(Interval(r.step, fitness(r.score, exp.mode), r.hparams))
        metrics[r.member] = {k: float(v) for k, v in r.metrics.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    changes: dict[str, object] = {}
    if "metrics" in reads:
        changes["metrics"] = metrics
    if "history" in reads:
        changes["history"] = {m: tuple(points) for m, points in history.items()}
        if at_step is None:  # asynchronous: members explored since their last report are pending points;
            # a generation's own explores are known to the policy, and the store's would differ by worker
            changes["current"] = {m.id: m.hparams for m in store.members(name) if m.id in history}
    return replace(standings, **changes)
