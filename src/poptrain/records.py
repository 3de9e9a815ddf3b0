"""The plain records PBT works on: members, what they report, and the decisions taken on them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

import numpy as np

Hparams = dict[str, Any]

# Member status values, as stored.
ACTIVE = "active"
DONE = "done"
FAILED = "failed"


@dataclass(frozen=True)
class MemberView:
    """One member as the exploit policy sees it: fitness is 'higher is better', never NaN."""

    id: int
    step: int | None  # the step of its latest score, where the engine knows it
    fitness: float
    recent: tuple[float, ...] = ()  # last few fitness values, oldest first (for the t-test)


@dataclass(frozen=True)
class Interval:
    """One report in a member's history: the hyperparameters it trained with up to `step`, and its fitness then."""

    step: int
    fitness: float  # 'higher is better', -inf for a missing or non-finite score
    hparams: Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class Standings:
    """The population as the exploit policy sees it, in columns, so a decision at 10,000 members stays cheap.

    `ids` ascend; `fitness` is 'higher is better' with -inf for missing or non-finite scores;
    `recent` maps an id to its last few fitness values, oldest first (only the t-test reads it,
    so an engine may fill it lazily).
    """

    ids: np.ndarray
    fitness: np.ndarray
    recent: Mapping[int, tuple[float, ...]] = field(default_factory=dict)
    step: int | None = None
    # A synchronous generation's one shared tie-break: a permutation of positions that every member's
    # ranking starts from, so tied members of one generation agree on who is bottom (None: each draws its own).
    tiebreak: np.ndarray | None = None
    # What a strategy that reads "history" sees: each member's last few intervals, oldest first, and
    # each member's current hyperparameters (which differ from its last interval's right after an explore).
    history: Mapping[int, tuple[Interval, ...]] = field(default_factory=dict)
    current: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    # What a strategy that reads "metrics" sees: each member's latest metrics (numbers only).
    metrics: Mapping[int, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64)
        fit = np.asarray(self.fitness, dtype=np.float64)
        if ids.shape != fit.shape or ids.ndim != 1:
            raise ValueError("Standings needs one fitness value per id")
        order = np.argsort(ids, kind="stable")
        if len(ids) > 1 and np.any(ids[order][1:] == ids[order][:-1]):
            raise ValueError("Standings needs each member id once")
        object.__setattr__(self, "ids", ids[order])
        object.__setattr__(self, "fitness", np.where(np.isfinite(fit), fit, -np.inf)[order])

    @classmethod
    def of(cls, views: Iterable[MemberView]) -> Standings:
        """Standings from member views (as tests and custom engines build them)."""
        views = list(views)
        return cls(np.array([v.id for v in views], dtype=np.int64),
                   np.array([v.fitness for v in views], dtype=np.float64), {v.id: v.recent for v in views})

    @classmethod
    def from_scores(cls, ids: Sequence[int], scores: Sequence[float | None], mode: str,
                    recent: Mapping[int, tuple[float, ...]] | None = None, step: int | None = None) -> Standings:
        """Standings from stored scores of one metric and its mode ('max' or 'min')."""
        raw = scores.astype(np.float64) if isinstance(scores, np.ndarray) \
            else np.array([np.nan if s is None else s for s in scores], dtype=np.float64)
        return cls(np.array(ids, dtype=np.int64), raw if mode == "max" else -raw, recent or {}, step)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, member: int) -> int | None:
        """The position of `member` in the columns, or None if it is not ranked."""
        at = int(np.searchsorted(self.ids, member))
        return at if at < len(self.ids) and self.ids[at] == member else None

    def view(self, member: int) -> MemberView | None:
        """One member's view, or None if it has no score here."""
        at = self.index(member)
        if at is None:
            return None
        return MemberView(id=member, step=self.step, fitness=float(self.fitness[at]),
                          recent=tuple(self.recent.get(member, ())))

    def including(self, member: MemberView) -> Standings:
        """These standings with `member`'s own (fresher) fitness in place of its stored one."""
        at = self.index(member.id)
        if at is not None and self.fitness[at] == member.fitness:
            return self  # the usual case: the member's view came from these standings
        tiebreak = self.tiebreak
        if at is None:
            at = int(np.searchsorted(self.ids, member.id))
            ids, fit = np.insert(self.ids, at, member.id), np.insert(self.fitness, at, member.fitness)
            tiebreak = None  # positions moved: the shared tie-break no longer fits
        else:
            ids, fit = self.ids, self.fitness.copy()
            fit[at] = member.fitness
        return replace(self, ids=ids, fitness=fit, tiebreak=tiebreak)

    def with_tiebreak(self, rng: np.random.Generator) -> Standings:
        """These standings with one tie-break drawn from `rng`, shared by every decision taken on them."""
        return replace(self, tiebreak=rng.permutation(len(self.ids)))


@dataclass(frozen=True)
class Continue:
    """Keep training with the current weights and hyperparameters."""


@dataclass(frozen=True)
class Exploit:
    """Copy the weights of member `source` and take `hparams`, explored from the source's.

    An exploit strategy returns it with `hparams` None (it only picks the source); the Policy
    fills them in once the source's hyperparameters are known, and `tell` adds the source's
    `state` for the caller to load.
    """

    source: int
    hparams: Hparams | None = None
    state: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Finished:
    """The member reached its budget: ask for another."""


@dataclass(frozen=True)
class Released:
    """The member left this process (it waits at a synchronous barrier, or its lease was taken over): ask again."""


Decision = Continue | Exploit | Finished | Released


def fitness(score: float | None, mode: str) -> float:
    """Map a score to 'higher is better'; NaN, infinities and missing scores rank worst."""
    if score is None or not math.isfinite(score):
        return -math.inf
    return float(score) if mode == "max" else -float(score)



class Scored(Protocol):
    """What ranking reads of a member: a store's member row has these (so do the rows a progress query returns)."""

    id: int
    status: str
    last_score: float | None


M = TypeVar("M", bound=Scored)


def finite_score(value: Any) -> float | None:
    """A reported value as a finite float, or None (missing, NaN, infinite, or not a number at all)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value) if math.isfinite(value) else None


def best_members(members: Iterable[M], mode: str, score: Callable[[M], Any] | None = None) -> list[M]:
    """Members ranked best first under `mode` ('max' or 'min'), by their last score or by `score(member)`.

    The one definition of "the best members" (the CLI, the report, the dashboard, the progress
    summary and `Result.best` all read it): failed members and members without a finite score are
    left out, and tied members rank by id, lowest first.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    read = score if score is not None else (lambda m: m.last_score)
    ranked = [(s, m) for m in members if m.status != FAILED and (s := finite_score(read(m))) is not None]
    ranked.sort(key=lambda pair: (-pair[0] if mode == "max" else pair[0], pair[1].id))
    return [m for _, m in ranked]
