"""The vectorized engine: the whole population as one batched model in this process (CPU or GPU).

Every member trains each interval in one call, so the members move in step: decisions are
taken at the ready points as in synchronous mode, by the same policy functions and generators,
and exploit is an index copy inside the stacked tensors. Reports go to the store in one
transaction per interval; checkpoints hold the whole population in one file.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import PoptrainError, SpecError
from ..experiment import ExperimentSpec
from ..population import ACTIVE, Exploit
from ..store import CheckpointRecord, CheckpointStore, Event, MemberRecord, Store
from ..store.base import EXPLOIT_AT_BARRIER
from ..trainable import import_object
from .base import Engine
from .progress import ProgressDisplay
from .standings import read_standings
from .supervisor import Heartbeat
from .worker import MemberError, score_of, user

log = logging.getLogger("poptrain")


def population_class(exp: ExperimentSpec, trainable: Any = None) -> type:
    """The batched counterpart of the experiment's trainable, checked against its space."""
    cls = trainable or exp.trainable
    if isinstance(cls, str):
        cls = import_object(cls, exp.paths)
    batched = cls if hasattr(cls, "copy_members") else getattr(cls, "vectorized", None)
    if batched is None:
        raise SpecError(f"trainable {exp.trainable} has no batched counterpart: give it `vectorized = <a "
                        f"poptrain.torch.TorchPopulation subclass>`, or use the local engine")
    for name in exp.space:
        if name not in batched.hparams:
            raise SpecError(f"hyperparameter {name!r} cannot be vectorized: {batched.__name__} varies only "
                            f"{', '.join(batched.hparams) or 'nothing'} per member ({name!r} would change shapes "
                            f"or code paths); use the local engine")
    return batched


class VectorizedRun:
    """One process that holds every member and trains them as one batched model."""

    def __init__(self, store: Store, name: str, trainable: Any = None, device: str = "cpu",
                 compile: bool = False) -> None:
        self.store, self.name, self.device, self.compile = store, name, device, compile
        self.exp = ExperimentSpec.from_spec(store.get_spec(name), trainable=trainable)  # a live class wins over its path
        self.policy = self.exp.policy
        self.batched = population_class(self.exp, trainable)
        self.checkpoints = CheckpointStore(self.exp.checkpoints)
        self.id = f"vectorized-{os.getpid()}"

    def _hold_all(self) -> list[MemberRecord]:
        held = self.store.claim_all(self.name, self.id, self.exp.lease, time.time())
        active = [m for m in self.store.members(self.name) if m.status == ACTIVE]
        if len(held) < len(active):
            raise PoptrainError(f"experiment {self.name!r}: other workers hold some members; the vectorized engine "
                                f"needs the whole population")
        return held

    def run(self, progress: bool = False) -> None:
        """Train until every member is done; the batched step raising costs every member one failure.

        One step holds every member, so an error in the user's batched code is charged to each of
        them, and the population restarts from its newest checkpoint, up to `max_failures` times.
        """
        with Heartbeat(self.store, self.name, self.id, self.exp.lease), \
                ProgressDisplay(self.store, self.name, self.exp.mode, enabled=progress) as display:
            while True:
                members = self._hold_all()
                if not members:
                    return
                try:
                    self._train(members, display)
                    return
                except MemberError as exc:
                    self._fail_all(members, str(exc))

    def _fail_all(self, members: list[MemberRecord], error: str) -> None:
        statuses = {self.store.record_failure(self.name, m.id, self.id, error, self.exp.max_failures) for m in members}
        if ACTIVE in statuses:
            log.warning("the batched population raised (%s); retrying every member from its last checkpoint", error)
        else:
            log.error("the batched population failed more than %d times; every member is marked failed: %s",
                      self.exp.max_failures, error)

    def _restore(self, members: list[MemberRecord], population: Any) -> list[MemberRecord]:
        """Continue from the newest population file every member has a record of, or from step 0."""
        if all(m.step == 0 and m.version == m.ckpt_version for m in members):
            return members
        by_file: list[dict[str, CheckpointRecord]] = []
        for m in members:
            records = self.store.checkpoints(self.name, m.id)
            if any("#member=" not in c.key for c in records):
                raise PoptrainError(f"experiment {self.name!r} was trained by another engine (its checkpoints are "
                                    f"one member's each): resume it with that engine")
            by_file.append({c.key.partition("#member=")[0]: c for c in records})
        shared = set.intersection(*(set(files) for files in by_file))
        if not shared:  # interrupted before its first complete checkpoint: start over
            return [self.store.rollback(self.name, m.id, self.id, None) for m in members]
        newest = max(shared, key=lambda f: (by_file[0][f].step, by_file[0][f].created))
        ckpt = by_file[0][newest]
        population.load_state_dict(self.checkpoints.load(newest, ckpt.checksum))
        for i, files in enumerate(by_file):
            population.set_hparams(i, files[newest].hparams)
        return [self.store.rollback(self.name, m.id, self.id, files[newest]) for m, files in zip(members, by_file)]

    def _train(self, members: list[MemberRecord], display: ProgressDisplay) -> None:
        exp, ids = self.exp, [m.id for m in members]
        population = user(self.batched, [m.hparams for m in members], [m.seed for m in members], device=self.device)
        if self.compile:
            if hasattr(population, "compile"):
                population.compile()
            else:
                log.warning("%s has no compile() (a poptrain.torch.TorchPopulation has one): training eagerly",
                            type(population).__name__)
        members = self._restore(members, population)
        hparams = [dict(m.hparams) for m in members]
        versions = [m.version for m in members]
        last_ready = members[0].last_ready
        if members[0].step == 0:  # a population file from the start marks the run as this engine's to resume
            self._checkpoint(population, ids, hparams, versions, 0, last_ready)
        for step in range(members[0].step + 1, exp.steps + 1):
            scheduled = exp.scheduled(step - 1)
            if scheduled is not None:
                for i in range(len(ids)):
                    if hparams[i] != scheduled:
                        user(population.set_hparams, i, scheduled)
                        hparams[i] = dict(scheduled)
            user(population.train)
            results = user(population.evaluate)
            rows = []
            for i, result in enumerate(results):
                score, metrics = user(score_of, result, exp.metric)
                rows.append((ids[i], score, metrics, hparams[i]))
            self.store.report_many(self.name, self.id, step, rows, time.time())
            versions = [v + 1 for v in versions]
            display.update()
            if step == exp.steps:
                self._checkpoint(population, ids, hparams, versions, step, last_ready)
                for m in ids:
                    self.store.finish(self.name, m, self.id)
                return
            if self.policy.is_ready(step, last_ready):
                last_ready = step
                if exp.exploit is not None:
                    self._exploit(population, ids, hparams, versions, step)
                self._checkpoint(population, ids, hparams, versions, step, last_ready)

    def _exploit(self, population: Any, ids: list[int], hparams: list[dict[str, Any]], versions: list[int],
                 step: int) -> None:
        """Every member decides on the scores at this step; copies read the state from before any copy."""
        standings = read_standings(self.store, self.name, self.exp, at_step=step, everyone=True)
        index = {m: i for i, m in enumerate(ids)}
        decisions = self.policy.decide_generation(
            standings, step, lambda source: hparams[index[source]] if source in index else None)
        dsts, srcs, new = [], [], {}
        for i, m in enumerate(ids):
            decision = decisions.get(m)
            if isinstance(decision, Exploit):
                dsts.append(i)
                srcs.append(index[decision.source])
                new[i] = decision.hparams
        if not dsts:
            return
        population.copy_members(dsts, srcs)
        before = [dict(h) for h in hparams]
        now = time.time()
        self.store.record_exploits(self.name, [Event(
            member=ids[i], step=step, source=ids[src], source_step=step, old_hparams=before[i], new_hparams=new[i],
            time=now, source_hparams=before[src], kind=EXPLOIT_AT_BARRIER) for i, src in zip(dsts, srcs)], self.id)
        for i in dsts:
            population.set_hparams(i, new[i])
            hparams[i] = new[i]
            versions[i] += 1

    def _checkpoint(self, population: Any, ids: list[int], hparams: list[dict[str, Any]], versions: list[int],
                    step: int, last_ready: int) -> None:
        """One file for the whole population; each member's record points at its part of it."""
        key = f"{self.name}/population-s{step:06d}-{uuid.uuid4().hex[:12]}.ckpt"
        checksum = self.checkpoints.save(key, population.state_dict())
        now = time.time()
        records = [(CheckpointRecord(member=m, seq=0, step=step, key=f"{key}#member={i}", checksum=checksum,
                                     hparams=hparams[i], last_ready=last_ready, pending=False, created=now), versions[i])
                   for i, m in enumerate(ids)]
        dropped = Counter(old.partition("#member=")[0] for old in self.store.add_checkpoints(
            self.name, records, self.exp.keep_checkpoints, now, self.id))
        for path, count in dropped.items():
            if count == len(ids):  # no member's record points at it any more
                self.checkpoints.delete(path)


@dataclass
class Vectorized(Engine):
    """The whole population as one batched model in this process, on `device` (cpu, cuda, ...).

    `compile` runs the batched training step and evaluation under torch.compile: off by default,
    since compiling takes longer than a short run saves (benchmarks/vectorized.py measures both).
    """

    name: ClassVar[str] = "vectorized"
    batched: ClassVar[bool] = True
    device: str = "cpu"
    compile: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device:
            raise SpecError(f"engine vectorized: device must name a torch device (cpu, cuda, ...), not {self.device!r}")
        if not isinstance(self.compile, bool):
            raise SpecError(f"engine vectorized: compile must be true or false, not {self.compile!r}")

    def run(self, store: Store, spec: ExperimentSpec, trainable: Any = None, progress: bool = False) -> None:
        """Train the whole population as one batched model until every member reaches its budget."""
        VectorizedRun(store, spec.name, trainable, self.device, self.compile).run(progress)
