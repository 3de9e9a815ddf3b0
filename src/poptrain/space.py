"""Hyperparameter domains: sample from the prior, perturb, add noise, clip, (de)serialise."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import SpecError
from .records import Hparams

# Integer bounds must fit numpy's int64, which samples them.
_INT64_MAX = 2**63 - 1


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _clip(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


def _check_factor(factor: float) -> float:
    if not _is_real(factor) or not math.isfinite(factor) or factor <= 0:
        raise SpecError(f"perturb factor must be a positive number, got {factor!r}")
    return float(factor)


def _check_sigma(sigma: float) -> float:
    if not _is_real(sigma) or not math.isfinite(sigma) or sigma < 0:
        raise SpecError(f"noise sigma must be a non-negative number, got {sigma!r}")
    return float(sigma)


def _float_bounds(low: Any, high: Any) -> tuple[float, float]:
    for key, v in (("low", low), ("high", high)):
        if not _is_real(v):
            raise SpecError(f"{key} must be a number, got {v!r}")
        if not math.isfinite(v):
            raise SpecError(f"{key} must be finite, got {v!r}")
    low, high = float(low), float(high)
    if low > high:
        raise SpecError(f"low {low!r} > high {high!r}")
    return low, high


class Domain:
    """The set of values one hyperparameter may take, and how to move within it."""

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw a value from the prior (also what *resample* does)."""
        raise NotImplementedError

    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> Any:
        """Move `value` multiplicatively by `factor` (the paper's *perturb*), within bounds."""
        raise NotImplementedError

    def noise(self, value: Any, sigma: float, rng: np.random.Generator) -> Any:
        """Add Gaussian noise of scale `sigma` in the domain's own units, within bounds."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The domain as plain JSON-serialisable data (inverse of `domain_from_dict`)."""
        raise NotImplementedError

    def canonical(self, value: Any) -> Any:
        """Return `value` as a plain Python int/float/choice value, or raise SpecError if outside."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """Whether `value` lies in the domain."""
        try:
            self.canonical(value)
        except SpecError:
            return False
        return True

    def _outside(self, value: Any) -> SpecError:
        return SpecError(f"value {value!r} is outside {self!r}")


@dataclass(frozen=True)
class Uniform(Domain):
    """Real values drawn uniformly from [low, high]."""

    low: float
    high: float

    def __post_init__(self) -> None:
        low, high = _float_bounds(self.low, self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def canonical(self, value: Any) -> float:
        if not _is_real(value) or not self.low <= float(value) <= self.high:
            raise self._outside(value)
        return float(value)

    def sample(self, rng: np.random.Generator) -> float:
        u = float(rng.random())
        # Written as a convex combination so that huge ranges cannot overflow.
        return _clip(self.low * (1.0 - u) + self.high * u, self.low, self.high)

    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> float:
        """value * factor, clipped. A value of 0 stays 0: use `noise` to move away from zero."""
        return _clip(self.canonical(value) * _check_factor(factor), self.low, self.high)

    def noise(self, value: Any, sigma: float, rng: np.random.Generator) -> float:
        v = self.canonical(value) + float(rng.normal(0.0, _check_sigma(sigma)))
        return _clip(v, self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "uniform", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class LogUniform(Uniform):
    """Positive real values whose logarithm is uniform on [log low, log high].

    Perturbing multiplies by the factor, which is a shift by log(factor) in log space.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low <= 0:
            raise SpecError(f"loguniform needs low > 0, got low {self.low!r}")

    def _from_log(self, z: float) -> float:
        z = _clip(z, math.log(self.low), math.log(self.high))  # before exp: no overflow
        return _clip(math.exp(z), self.low, self.high)

    def sample(self, rng: np.random.Generator) -> float:
        return self._from_log(float(rng.uniform(math.log(self.low), math.log(self.high))))

    def noise(self, value: Any, sigma: float, rng: np.random.Generator) -> float:
        """exp(log(value) + N(0, sigma)), clipped."""
        z = math.log(self.canonical(value)) + float(rng.normal(0.0, _check_sigma(sigma)))
        return self._from_log(z)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "loguniform", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class IntUniform(Domain):
    """Integers in [low, high] (inclusive), uniform or (log=True) log-uniform."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        for key, v in (("low", self.low), ("high", self.high)):
            if not _is_int(v):
                raise SpecError(f"{key} must be an integer, got {v!r}")
            if abs(int(v)) > _INT64_MAX:
                raise SpecError(f"{key} {v!r} does not fit in 64 bits")
        if not isinstance(self.log, (bool, np.bool_)):
            raise SpecError(f"log must be true or false, got {self.log!r}")
        low, high = int(self.low), int(self.high)
        if low > high:
            raise SpecError(f"low {low!r} > high {high!r}")
        if self.log and low < 1:
            raise SpecError(f"int with log = true needs low >= 1, got low {low!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", bool(self.log))

    def canonical(self, value: Any) -> int:
        if _is_int(value):
            v = int(value)
        elif _is_real(value) and float(value).is_integer():
            v = int(value)  # e.g. 3.0 read back from JSON
        else:
            raise self._outside(value)
        if not self.low <= v <= self.high:
            raise self._outside(value)
        return v

    def _clip_int(self, v: float) -> int:
        return int(_clip(v, self.low, self.high))

    def sample(self, rng: np.random.Generator) -> int:
        if not self.log:
            return int(rng.integers(self.low, self.high, endpoint=True))
        # Each integer k owns [k - 0.5, k + 0.5) in log space.
        z = float(rng.uniform(math.log(self.low - 0.5), math.log(self.high + 0.5)))
        return self._clip_int(round(math.exp(z)))

    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> int:
        """Move round(|value| * |factor - 1|) steps, at least one, up if factor > 1, down if < 1.

        At a bound the factor pushes against, move one step the other way instead, so the
        result differs from `value` whenever low < high and factor != 1 (factor 1 keeps it).
        For value >= 0 this is round(value * factor) with the one-step minimum.
        """
        v, factor = self.canonical(value), _check_factor(factor)
        if factor == 1.0 or self.low == self.high:
            return v
        direction = 1 if factor > 1.0 else -1
        steps = max(1, abs(round(v * factor) - v))
        new = self._clip_int(v + direction * steps)
        return v - direction if new == v else new

    def noise(self, value: Any, sigma: float, rng: np.random.Generator) -> int:
        """round(value + N(0, sigma)) (in log units when log=True), clipped."""
        v, sigma = self.canonical(value), _check_sigma(sigma)
        eps = float(rng.normal(0.0, sigma))
        if self.log:
            z = _clip(math.log(v) + eps, math.log(self.low), math.log(self.high))
            return self._clip_int(round(math.exp(z)))
        return self._clip_int(round(_clip(v + eps, self.low, self.high)))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice(Domain):
    """One of an ordered list of values (numbers, strings, ...); perturb moves to a neighbour."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if isinstance(self.values, (str, bytes)) or not isinstance(self.values, (list, tuple)):
            raise SpecError(f"choice values must be a list, got {self.values!r}")
        values = tuple(self.values)
        if not values:
            raise SpecError("choice needs at least one value")
        for i, v in enumerate(values):
            try:
                json.dumps(v, allow_nan=False)
            except (TypeError, ValueError):
                raise SpecError(f"choice value {v!r} is not JSON-serialisable") from None
            if _find(values[:i], v) is not None:
                raise SpecError(f"choice value {v!r} appears twice")
        object.__setattr__(self, "values", values)

    def index(self, value: Any) -> int:
        """Position of `value` in `values`; SpecError if absent."""
        i = _find(self.values, value)
        if i is None:
            raise self._outside(value)
        return i

    def canonical(self, value: Any) -> Any:
        return self.values[self.index(value)]

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def perturb(self, value: Any, factor: float, rng: np.random.Generator) -> Any:
        """Next value if factor > 1, previous if < 1, bouncing back at the ends."""
        i, factor = self.index(value), _check_factor(factor)
        n = len(self.values)
        if factor == 1.0 or n == 1:
            return self.values[i]
        j = i + (1 if factor > 1.0 else -1)
        if not 0 <= j < n:
            j = 2 * i - j
        return self.values[j]

    def noise(self, value: Any, sigma: float, rng: np.random.Generator) -> Any:
        """Index + round(N(0, sigma)), clipped to the list."""
        i = self.index(value)
        j = i + round(float(rng.normal(0.0, _check_sigma(sigma))))
        return self.values[int(_clip(j, 0, len(self.values) - 1))]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "choice", "values": list(self.values)}


def _find(values: tuple[Any, ...], value: Any) -> int | None:
    # Equality, except that True/False never match 1/0 (JSON keeps them apart).
    is_bool = isinstance(value, (bool, np.bool_))
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) != is_bool:
            continue
        try:
            if bool(v == value):
                return i
        except (TypeError, ValueError):  # e.g. comparing with an array
            continue
    return None


_KINDS: dict[str, tuple[type[Domain], tuple[str, ...], tuple[str, ...]]] = {
    # type: (class, required keys, optional keys)
    "choice": (Choice, ("values",), ()),
    "int": (IntUniform, ("low", "high"), ("log",)),
    "loguniform": (LogUniform, ("low", "high"), ()),
    "uniform": (Uniform, ("low", "high"), ()),
}


def typed_table(where: str, spec: Any, kinds: Mapping[str, Any], noun: str) -> tuple[str, dict[str, Any]]:
    """Split a `{type = ..., args...}` table into its known type and its arguments; errors say `where`."""
    known = ", ".join(sorted(kinds))
    if not isinstance(spec, Mapping):
        raise SpecError(f"{where}: expected a table with 'type' ({known}), got {spec!r}")
    kind = spec.get("type")
    if kind is None:
        raise SpecError(f"{where}: missing 'type' (known: {known})")
    if kind not in kinds:
        raise SpecError(f"{where}: unknown {noun} {kind!r} (known: {known})")
    return kind, {k: v for k, v in spec.items() if k != "type"}


def domain_from_dict(name: str, spec: Domain | Mapping[str, Any]) -> Domain:
    """Build one hyperparameter's domain from a Domain or a dict; errors name the hyperparameter."""
    if isinstance(spec, Domain):
        return spec
    where = f"hyperparameter {name!r}"
    kind, args = typed_table(where, spec, _KINDS, "type")
    cls, required, optional = _KINDS[kind]
    for key in args:
        if key not in required + optional:
            allowed = ", ".join(sorted(required + optional))
            raise SpecError(f"{where}: unknown key {key!r} for {kind} (allowed: {allowed})")
    for key in required:
        if key not in args:
            raise SpecError(f"{where}: {kind} needs {key!r}")
    try:
        return cls(**args)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def parse_space(mapping: Mapping[str, Any]) -> dict[str, Domain]:
    """Build the search space {name: Domain} from dicts or Domains."""
    if not isinstance(mapping, Mapping):
        raise SpecError(f"the space must be a table of hyperparameters, got {mapping!r}")
    if not mapping:
        raise SpecError("the space is empty: give at least one hyperparameter")
    space: dict[str, Domain] = {}
    for name, spec in mapping.items():
        if not isinstance(name, str) or not name:
            raise SpecError(f"hyperparameter names must be non-empty strings, got {name!r}")
        space[name] = domain_from_dict(name, spec)
    return space


def space_to_dict(space: Mapping[str, Domain]) -> dict[str, dict[str, Any]]:
    """The space as plain data; `parse_space` reads it back."""
    return {name: domain.to_dict() for name, domain in space.items()}


def sample_hparams(space: Mapping[str, Domain], rng: np.random.Generator) -> Hparams:
    """Draw every hyperparameter from its prior (a member's initial values)."""
    return {name: domain.sample(rng) for name, domain in space.items()}


def validate_hparams(space: Mapping[str, Domain], hparams: Mapping[str, Any], where: str,
                     partial: bool = False) -> Hparams:
    """Check `hparams` has exactly the space's names (with `partial`, some of them), each in its domain."""
    prefix = f"{where}: " if where else ""
    if not isinstance(hparams, Mapping):
        raise SpecError(f"{prefix}hyperparameters must be a table, got {hparams!r}")
    names = ", ".join(space)
    for name in hparams:
        if name not in space:
            raise SpecError(f"{prefix}unknown hyperparameter {name!r} (the space has: {names})")
    clean: Hparams = {}
    for name, domain in space.items():
        if name not in hparams:
            if partial:
                continue
            raise SpecError(f"{prefix}missing hyperparameter {name!r} (the space has: {names})")
        try:
            clean[name] = domain.canonical(hparams[name])
        except SpecError:
            raise SpecError(
                f"{prefix}hyperparameter {name!r} = {hparams[name]!r} is outside {domain!r}"
            ) from None
    return clean
