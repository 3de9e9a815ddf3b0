"""The vectorized engine: the whole population as one batched model in this process (CPU or GPU).

Every member trains each interval in one call, so the members move in step: the batched
ask/tell (`poptrain.asktell.LiveBatch`) reports them in one transaction, takes the decisions at
the ready points as in synchronous mode, by the same policy functions and generators, and
exploit is an index copy inside the stacked tensors; checkpoints hold the whole population in
one file. With `shards`, the batched model is a `ShardedPopulation`: the same loop drives
sub-populations in processes of their own (`engines.shards`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from ..asktell import LiveBatch
from ..errors import SpecError
from ..spec import ExperimentSpec
from ..heartbeat import Heartbeat
from ..outcome import MemberError, user
from ..records import ACTIVE
from ..store import Store
from ..trainable import import_object
from .shards import ShardedPopulation
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
    """One process that holds every member and trains them as one batched model (or drives the shards that do)."""

    def __init__(self, store: Store, name: str, trainable: Any = None, device: str = "cpu",
                 compile: bool = False, memory_limit: int | None = None, shards: Sequence[str] = (),
                 threads: int = 1) -> None:
        self.store, self.name, self.device, self.compile = store, name, device, compile
        self.memory_limit, self.shards, self.threads = memory_limit, list(shards), threads
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
        the estimate's two trial steps would only slow every run's start); in shards, each shard
        checks its own part as it starts.
        """
        from ..torch.memory import check_fits
        from ..torch.vectorized import BatchedTrainable

        active = [m for m in self.store.members(self.name) if m.status == ACTIVE]
        if active and len(self.shards) > len(active):
            raise SpecError(f"engine vectorized: {len(self.shards)} shards for a population of {len(active)}: give each "
                            f"shard a member at least (shards <= population)")
        checked = self.memory_limit is not None or not str(self.device).startswith("cpu")
        if checked and active and issubclass(self.batched, BatchedTrainable) and not self.shards:
            # (a class that is not a BatchedTrainable keeps no tensors to estimate; a shard checks its own part)
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
        hparams, seeds = [m.hparams for m in members], [m.seed for m in members]
        if self.shards:
            population = user(ShardedPopulation, self.batched, hparams, seeds, self.shards, self.threads,
                              self.compile, self.memory_limit)
            try:
                self._steps(members, population, display)
            finally:
                population.close()
            return
        population = user(self.batched, hparams, seeds, device=self.device)
        if self.compile:
            if hasattr(population, "compile"):
                population.compile()
            else:
                log.warning("%s has no compile() (a poptrain.torch.BatchedTrainable has one): training eagerly",
                            type(population).__name__)
        self._steps(members, population, display)

    def _steps(self, members: list[Any], population: Any, display: ProgressDisplay) -> None:
        """From the newest population file (or step 0) to the budget."""
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
    """The whole population as one batched model, on `device` (default: CUDA when present, else the CPU).

    `compile` runs the batched training step and evaluation under torch.compile: off by default,
    since compiling takes longer than a short run saves (benchmarks/vectorized.py measures both).
    `threads` is how many CPU threads torch uses for the run (default: one per core, the faster
    on the CPU in benchmarks/vectorized.py; in each shard, one); the process's own setting is
    restored afterwards. `memory_limit` is the bytes the population may take on the device
    (default: what the device has free); a population whose estimate (`poptrain.torch.memory`)
    exceeds it is refused before training, naming the largest population that fits.
    `shards=N` splits the population into N batched sub-populations, each trained by a process
    of its own at once (`engines.shards`); `devices=["cuda:0", "cuda:1"]` puts one shard on each.
    """

    name: ClassVar[str] = "vectorized"
    batched: ClassVar[bool] = True
    device: str | None = None
    compile: bool = False
    threads: int | None = None
    memory_limit: int | None = None
    shards: int | None = None
    devices: list[str] | None = None

    def __post_init__(self) -> None:
        check_workers(self.name, self.threads, what="threads")
        check_workers(self.name, self.memory_limit, what="memory_limit (bytes)")
        check_workers(self.name, self.shards, what="shards")
        if self.device is not None and (not isinstance(self.device, str) or not self.device):
            raise SpecError(f"engine vectorized: device must name a torch device (cpu, cuda, ...), not {self.device!r}")
        if not isinstance(self.compile, bool):
            raise SpecError(f"engine vectorized: compile must be true or false, not {self.compile!r}")
        if self.devices is not None:
            if (not isinstance(self.devices, (list, tuple)) or not self.devices
                    or not all(isinstance(d, str) and d for d in self.devices)):
                raise SpecError(f"engine vectorized: devices must list torch devices (e.g. [\"cuda:0\", \"cuda:1\"]), "
                                f"not {self.devices!r}")
            if self.shards not in (None, len(self.devices)):
                raise SpecError(f"engine vectorized: shards={self.shards} but {len(self.devices)} devices: one shard "
                                f"runs on each device, so give one of the two")
            if self.device is not None:
                raise SpecError("engine vectorized: give device (one) or devices (one shard on each), not both")

    def placement(self) -> list[str]:
        """The device of each shard: none for one unsharded population."""
        if self.devices is not None:
            return list(self.devices) if len(self.devices) > 1 else []
        return [self.resolved_device()] * self.shards if self.shards and self.shards > 1 else []

    def resolved_device(self) -> str:
        """`device`, or CUDA when torch sees a GPU, else the CPU."""
        import torch

        if self.devices:
            return self.devices[0]
        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def run(self, store: Store, spec: ExperimentSpec, trainable: Any = None, progress: bool = False) -> None:
        """Train the whole population as one batched model until every member reaches its budget."""
        import torch

        shards = self.placement()
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads or os.cpu_count() or 1)
        try:
            VectorizedRun(store, spec.name, trainable, self.resolved_device(), self.compile, self.memory_limit,
                          shards, self.threads or 1).run(progress)
        finally:
            torch.set_num_threads(previous)
