"""Multi-objective selection: rank by non-dominated sorting, then crowding distance; the bottom copies the top.

Dushatskiy et al., "Multi-Objective Population Based Training" (ICML 2023). The objectives are
metrics of evaluate()'s dict, each with its mode:

    [exploit]
    type = "pareto"
    objectives = {accuracy = "max", params = "min"}
    fraction = 0.25

A member is ranked by its front (0: no member is at least as good in every objective and better
in one), then, within a front, by crowding distance (members at the ends of a front and in its
sparse stretches first, so the front keeps its spread). A member missing an objective, or with a
non-finite one, ranks below every front and is never copied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import SpecError
from ..records import Continue, Decision, Exploit, MemberView, Standings
from .checks import check_number
from .ranking import standings_with, top_and_bottom
from .registry import METRICS, ExploitStrategy, PopulationView, strategy

MODES = ("max", "min")


def parse_objectives(value: Any, where: str = "pareto") -> tuple[tuple[str, str], ...]:
    """Objectives as ((metric, mode), ...) from a {metric: mode} table or a list of pairs; SpecError otherwise."""
    pairs = list(value.items()) if isinstance(value, Mapping) else value
    hint = f'{where} objectives must be a table of metric = "max" or "min", e.g. {{accuracy = "max", params = "min"}}'
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, (list, tuple)):
        raise SpecError(f"{hint}, not {value!r}")
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise SpecError(f"{hint}, not {value!r}")
        name, mode = pair
        if not isinstance(name, str) or not name or mode not in MODES:
            raise SpecError(f"{hint}; {name!r} has mode {mode!r}")
        out.append((name, mode))
    if len(out) < 2 or len({n for n, _ in out}) != len(out):
        raise SpecError(f"{hint}: at least two, each named once")
    return tuple(out)


def objectives_of(spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """A stored experiment spec's objectives ((metric, mode), ...) if its exploit strategy has them, else None."""
    exploit = spec.get("exploit") or {}
    return parse_objectives(exploit["objectives"]) if isinstance(exploit, Mapping) and "objectives" in exploit else None


def objective_matrix(metrics: Mapping[int, Mapping[str, float]], ids: Any,
                     objectives: tuple[tuple[str, str], ...]) -> np.ndarray:
    """One row per id: each objective as 'higher is better', NaN where missing or not finite."""
    out = np.full((len(ids), len(objectives)), np.nan)
    for i, member in enumerate(ids):
        row = metrics.get(int(member), {})
        for j, (name, mode) in enumerate(objectives):
            v = row.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[i, j] = v if mode == "max" else -v
    return out


def fronts(values: np.ndarray) -> np.ndarray:
    """Each row's non-dominated front (0 is the best), higher is better in every column; NaN rows get -1."""
    n = len(values)
    valid = ~np.isnan(values).any(axis=1)
    front = np.full(n, -1, dtype=np.int64)
    v = values[valid]
    # dominates[i, j]: row i is at least as good as row j everywhere and better somewhere
    geq = (v[:, None, :] >= v[None, :, :]).all(-1)
    gt = (v[:, None, :] > v[None, :, :]).any(-1)
    dominates = geq & gt
    remaining = np.ones(len(v), dtype=bool)
    level = np.zeros(len(v), dtype=np.int64)
    k = 0
    while remaining.any():
        dominated = (dominates[remaining][:, remaining]).any(axis=0)
        current = np.flatnonzero(remaining)[~dominated]
        level[current] = k
        remaining[current] = False
        k += 1
    front[valid] = level
    return front


def crowding(values: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Each row's crowding distance within its front (inf at a front's ends; 0 for NaN rows)."""
    out = np.zeros(len(values))
    for k in np.unique(front[front >= 0]):
        rows = np.flatnonzero(front == k)
        if len(rows) <= 2:
            out[rows] = np.inf
            continue
        for j in range(values.shape[1]):
            order = rows[np.argsort(values[rows, j], kind="stable")]
            span = values[order[-1], j] - values[order[0], j]
            out[order[0]] = out[order[-1]] = np.inf
            if span > 0:
                out[order[1:-1]] += (values[order[2:], j] - values[order[:-2], j]) / span
    return out


def rank(values: np.ndarray, shuffled: np.ndarray) -> np.ndarray:
    """Positions from best to worst: by front, then crowding distance (largest first), ties in `shuffled` order."""
    front = fronts(values)
    crowd = crowding(values, front)
    key_front = np.where(front < 0, np.iinfo(np.int64).max, front)[shuffled]
    order = np.lexsort((-crowd[shuffled], key_front))  # the last key sorts first; lexsort is stable
    return shuffled[order]


@strategy("exploit", "pareto")
@dataclass(frozen=True)
class Pareto(ExploitStrategy):
    """Bottom `fraction` by (front, crowding distance) over `objectives` copies a uniform draw from the top."""

    objectives: Any  # {metric: "max" or "min"}, at least two; kept as ((metric, mode), ...)
    fraction: float = 0.25
    reads: ClassVar[frozenset[str]] = frozenset({METRICS})

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        object.__setattr__(self, "fraction", check_number("pareto", "fraction", self.fraction, 0.0, 0.5))

    @classmethod
    def example(cls) -> Pareto:
        """Accuracy up and size down (the suite's example: its members report both)."""
        return cls({"accuracy": "max", "size": "min"})

    def to_dict(self) -> dict[str, Any]:
        """Its type, objectives as a {metric: mode} table, and fraction."""
        return {"type": self.kind, "objectives": dict(self.objectives), "fraction": self.fraction}

    def ranked(self, standings: Standings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(positions best first, objective matrix) of the standings; a member whose score failed has no objectives."""
        values = objective_matrix(standings.metrics, standings.ids, self.objectives)
        values[standings.fitness == -math.inf] = np.nan
        shuffled = standings.tiebreak if standings.tiebreak is not None else rng.permutation(len(standings))
        return rank(values, shuffled), values

    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision:
        """Exploit a top-q member by (front, crowding) if `member` ranks in the bottom q, else Continue."""
        standings = standings_with(member, population)
        n = len(standings)
        if n < 2:
            return Continue()
        ranked, values = self.ranked(standings, rng)
        top, bottom = top_and_bottom(ranked, self.fraction)
        if standings.index(member.id) not in bottom:
            return Continue()
        sources = top[~np.isnan(values[top]).any(axis=1)]
        if not len(sources):
            return Continue()
        return Exploit(int(standings.ids[sources[int(rng.integers(len(sources)))]]))
