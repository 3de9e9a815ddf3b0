"""The Engine interface: how members run. An engine holds its own options and executes the policy's decisions."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import SpecError

if TYPE_CHECKING:
    from ..spec import ExperimentSpec
    from ..store import Store


class Engine(ABC):
    """Trains a stored experiment to its budget. Subclasses are dataclasses whose fields are their options.

    `batched` engines hold the whole population as one model (their checkpoints are population
    files, so only a batched engine continues their runs).
    """

    name: ClassVar[str]
    batched: ClassVar[bool] = False

    @abstractmethod
    def run(self, store: Store, spec: ExperimentSpec, trainable: Any = None, progress: bool = False) -> None:
        """Train `spec`'s experiment, stored in `store`, until every member is done or failed.

        `trainable` is the live class when the spec names one that only this process can import
        (one defined in a notebook or script); engines that start other processes ship it by value.
        """

    def options(self) -> dict[str, Any]:
        """The engine's options as plain data."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}  # type: ignore[arg-type]


def check_workers(engine: str, workers: Any, what: str = "workers") -> int | None:
    """A count of workers (or threads): None (the engine's default) or a positive integer."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SpecError(f"engine {engine}: {what} must be a positive integer, not {workers!r}")
    return workers


def trained_batched(store: Store, name: str) -> bool:
    """Whether the experiment's checkpoints are population files (a batched engine wrote them)."""
    return any("#member=" in c.key for m in store.members(name) for c in store.checkpoints(name, m.id)[:1])


def check_not_batched(store: Store, name: str, engine: str) -> None:
    """Refuse to continue a batched engine's run with an engine that checkpoints members one by one."""
    if trained_batched(store, name):
        raise SpecError(f"experiment {name!r} was trained by the vectorized engine (its checkpoints hold whole "
                        f"populations): continue it with engine 'vectorized', not {engine!r}")
