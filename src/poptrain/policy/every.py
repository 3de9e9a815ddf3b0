"""The paper's *ready*: every `intervals` intervals, once a burn-in is done."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import check_int
from .registry import ReadyCriterion, strategy


@strategy("ready", "every")
@dataclass(frozen=True)
class Every(ReadyCriterion):
    """Ready every `intervals` intervals since the last ready step, once `burn_in` is done."""

    intervals: int
    burn_in: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "intervals", check_int("every", "intervals", self.intervals, 1))
        object.__setattr__(self, "burn_in", check_int("every", "burn_in", self.burn_in, 0))

    @classmethod
    def example(cls) -> Every:
        """Every 4 intervals (the suite's example)."""
        return cls(4)

    def is_ready(self, step: int, last_ready_step: int) -> bool:
        """True when `step` (intervals done) >= burn_in and `intervals` passed since the last."""
        return step >= self.burn_in and step - last_ready_step >= self.intervals
