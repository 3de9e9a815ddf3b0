"""The paper's *ready*: when a member may try to exploit the population."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import SpecError


class ReadyCriterion(Protocol):
    """Anything that says whether a member at `step` may exploit now."""

    def is_ready(self, step: int, last_ready_step: int) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


def _check_int(strategy: str, key: str, value: Any, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"{strategy} {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Every:
    """Ready every `intervals` intervals since the last ready step, once `burn_in` is done."""

    intervals: int
    burn_in: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "intervals", _check_int("every", "intervals", self.intervals, 1))
        object.__setattr__(self, "burn_in", _check_int("every", "burn_in", self.burn_in, 0))

    def is_ready(self, step: int, last_ready_step: int) -> bool:
        """True when `step` (intervals done) >= burn_in and `intervals` passed since the last."""
        return step >= self.burn_in and step - last_ready_step >= self.intervals

    def to_dict(self) -> dict[str, Any]:
        """The criterion as plain data (read back by `build_ready`)."""
        return {"type": "every", "intervals": self.intervals, "burn_in": self.burn_in}
