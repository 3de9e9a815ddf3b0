"""What one interval of the user's code gave: its score and metrics, or its failure (a MemberError)."""

from __future__ import annotations

import math
import traceback
from typing import Any, Callable

from .errors import SpecError, StorageError


class MemberError(Exception):
    """The user's code (trainable, metric, custom explore) raised for this member: its failure, not the run's."""

    @classmethod
    def of(cls, exc: BaseException) -> "MemberError":
        """The member's failure, described by the exception's last line."""
        return cls("".join(traceback.format_exception_only(type(exc), exc)).strip())


def user(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run the user's code; whatever it raises becomes a MemberError (the member's failure)."""
    try:
        return call(*args, **kwargs)
    except (StorageError, SpecError):
        raise  # from poptrain's own calls inside the user's code (a function trainable's report): not the member's
    except Exception as exc:
        raise MemberError.of(exc) from exc


def _plain(key: str, value: Any) -> Any:
    """A metric value as JSON can store it: numbers (numpy, torch scalars too) become floats."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if hasattr(value, "item"):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            raise ValueError(f"evaluate() returned a non-scalar for {key!r}: return a number") from None
        if isinstance(value, bool):  # a numpy or torch bool stays a bool: a flag, never a score
            return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"evaluate() returned {type(value).__name__} for {key!r}: return a number") from None


def score_of(result: Any, metric: str | None) -> tuple[float | None, dict[str, Any]]:
    """Split `evaluate()`'s result into the score PBT ranks by and the metrics it stores."""
    if isinstance(result, dict):
        if metric is None or metric not in result:
            raise ValueError(
                f"evaluate() returned keys {sorted(result)} but the experiment's metric is {metric!r}: "
                f"set metric to one of the keys")
        metrics = {str(k): _plain(str(k), v) for k, v in result.items()}
        score = metrics[metric]
    else:
        score = _plain(metric or "score", result)
        metrics = {metric or "score": score}
    if not isinstance(score, float):  # a bool, a string or None is not a score, returned alone or in a dict
        raise ValueError(f"evaluate()'s metric {metric or 'score'!r} is {score!r}, not a number")
    return (score if math.isfinite(score) else None), metrics
