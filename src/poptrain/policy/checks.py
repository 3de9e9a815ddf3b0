"""Argument checks shared by the strategies: each error names the strategy, the argument and the range."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..errors import SpecError


def is_real(x: Any) -> bool:
    """True for a finite real number that is not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def check_number(strategy: str, key: str, value: Any, low: float, high: float, low_open: bool = True) -> float:
    """`value` as a float if it lies in (low, high] (or [low, high]), else a SpecError naming it."""
    ok = is_real(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise SpecError(f"{strategy} {key} must be in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def check_int(strategy: str, key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int if it is an integer >= minimum (and <= maximum), else a SpecError naming it."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum \
            or (maximum is not None and value > maximum):
        limits = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise SpecError(f"{strategy} {key} must be an integer {limits}, got {value!r}")
    return int(value)
