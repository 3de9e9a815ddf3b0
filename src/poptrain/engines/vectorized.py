"""The vectorized engine: the whole population as one batched model in this process (CPU or GPU).

Every member trains each interval in one call, so the members move in step: the batched
ask/tell (`poptrain.asktell.LiveBatch`) reports them in one transaction, takes the decisions at
the ready points as in synchronous mode, by the same policy functions and generators, and
exploit is an index copy inside the stacked tensors; checkpoints hold the whole population in
one file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from ..asktell import LiveBatch
from ..errors import SpecError
from ..spec import ExperimentSpec
from ..heartbeat import Heartbeat
from ..outcome import MemberError, user
from ..records import ACTIVE
from ..store import Store
from ..trainable import import_object
from .base import Engine, check_workers
from .progress import ProgressDisplay

log = logging.getLogger("poptrain")

def population_class(exp: ExperimentSpec, trainable: Any = None) -> type:
    """The batched counterpart of the experiment's trainable, checked against its space."""
    cls = trainable or exp.trainable
    if isinstance(cls, str):
        cls = import_object(cls, exp.paths)
    batched = cls if hasattr(cls, "copy_members") else getattr(cls, "vectorized", None)
    if batched is None:
        raise SpecError(f"trainable {exp.trainable} has no batched counterpart: give it `vectorized = <a "
                        f"poptrain.torch.BatchedTrainable subclass>`, or use the local engine")
    for name in exp.space:
        if name not in batched.hparams:
            raise SpecError(f"hyperparameter {name!r} cannot be vectorized: {batched.__name__} varies only "
                            f"{', '.join(batched.hparams) or 'nothing'} per member ({name!r} would change shapes "
                            f"or code paths); use the local engine")
    return batched


class VectorizedRun:
    """One process that holds every member and trains them as one batched model."""

    def __init__(self, store: Store, name: str, trainable: Any = None, device: str = "cpu",
                 compile: bool = False, memory_limit: int | None = None) -> None:
        self.store, self.name, self.device, self.compile = store, name, device, compile
        self.memory_limit = memory_limit
        self.exp = ExperimentSpec.from_spec(store.get_spec(name), trainable=trainable)  # a live class wins over its path
        self.batched = population_class(self.exp, trainable)
        self.id = f"vectorized-{os.getpid()}"
        self.live = LiveBatch(store, name, self.exp, self.id)

    def run(self, progress: bool = False) -> None:
        """Train until every member is done; the batched step raising costs every member one failure.

        One step holds every member, so an error in the user's batched code is charged to each of
        them, and the population restarts from its newest checkpoint, up to `max_failures` times.
        A torch population (a `BatchedTrainable`) that would not fit on an accelerator, or in the
        `memory_limit` given, is refused before any member is leased (on the CPU without a limit
        the estimate's two trial steps would only slow every run's start).
        """
        from ..torch.memory import check_fits
        from ..torch.vectorized import BatchedTrainable

        active = [m for m in self.store.members(self.name) if m.status == ACTIVE]
        checked = self.memory_limit is not None or not str(self.device).startswith("cpu")
        if checked and active and issubclass(self.batched, BatchedTrainable):  # others keep no tensors to estimate
            check_fits(self.batched, [m.hparams for m in active], [m.seed for m in active], self.device,
                       self.memory_limit)
        with Heartbeat(self.store, self.name, self.id, self.exp.lease), \
                ProgressDisplay(self.store, self.name, self.exp.mode, enabled=progress) as display:
            while True:
                members = self.live.hold_all()
                if not members:
                    return
                try:
                    self._train(members, display)
                    return
                except MemberError as exc:
                    self.live.fail_all(members, str(exc))

    def _train(self, members: list[Any], display: ProgressDisplay) -> None:
        population = user(self.batched, [m.hparams for m in members], [m.seed for m in members], device=self.device)
        if self.compile:
            if hasattr(population, "compile"):
                population.compile()
            else:
                log.warning("%s has no compile() (a poptrain.torch.BatchedTrainable has one): training eagerly",
                            type(population).__name__)
        self.live.start(members, population)
        while self.live.step < self.exp.steps:
            self.live.schedule(population)
            user(population.train)
            finished = self.live.tell(user(population.evaluate), population)
            display.update()
            if finished:
                return


@dataclass
class Vectorized(Engine):
    """The whole population as one batched model in this process, on `device` (cpu, cuda, ...).

    `compile` runs the batched training step and evaluation under torch.compile: off by default,
    since compiling takes longer than a short run saves (benchmarks/vectorized.py measures both).
    `threads` is how many CPU threads torch uses for the run (default: one per core, the faster
    on the CPU in benchmarks/vectorized.py); the process's own setting is restored afterwards.
    `memory_limit` is the bytes the population may take on the device (default: what the device
    has free); a population whose estimate (`poptrain.torch.memory`) exceeds it is refused before
    training, naming the largest population that fits.
    """

    name: ClassVar[str] = "vectorized"
    batched: ClassVar[bool] = True
    device: str = "cpu"
    compile: bool = False
    threads: int | None = None
    memory_limit: int | None = None

    def __post_init__(self) -> None:
        check_workers(self.name, self.threads, what="threads")
        check_workers(self.name, self.memory_limit, what="memory_limit (bytes)")
        if not isinstance(self.device, str) or not self.device:
            raise SpecError(f"engine vectorized: device must name a torch device (cpu, cuda, ...), not {self.device!r}")
        if not isinstance(self.compile, bool):
            raise SpecError(f"engine vectorized: compile must be true or false, not {self.compile!r}")

    def run(self, store: Store, spec: ExperimentSpec, trainable: Any = None, progress: bool = False) -> None:
        """Train the whole population as one batched model until every member reaches its budget."""
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads or os.cpu_count() or 1)
        try:
            VectorizedRun(store, spec.name, trainable, self.device, self.compile, self.memory_limit).run(progress)
        finally:
            torch.set_num_threads(previous)
