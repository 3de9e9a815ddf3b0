"""The plain records PBT works on: members, what they report, and the decisions taken on them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
class Continue:
    """Keep training with the current weights and hyperparameters."""


@dataclass(frozen=True)
class Exploit:
    """Copy the weights and hyperparameters of member `source`, then explore."""

    source: int


Decision = Continue | Exploit


def fitness(score: float | None, mode: str) -> float:
    """Map a score to 'higher is better'; NaN, infinities and missing scores rank worst."""
    if score is None or not math.isfinite(score):
        return -math.inf
    return float(score) if mode == "max" else -float(score)

