"""The asynchronous PBT worker loop, written once and shared by every engine that runs processes."""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from ..errors import CorruptCheckpoint
from ..experiment import Experiment
from ..population import ACTIVE, Continue, Exploit, MemberView, fitness
from ..store import CheckpointRecord, CheckpointStore, Event, MemberRecord, Store
from ..trainable import Trainable, resolve_trainable

log = logging.getLogger("poptrain")

EXPLOIT_RNG, EXPLORE_RNG = 1, 2


def decision_rng(seed: int, member: int, step: int, purpose: int) -> np.random.Generator:
    """The generator for one decision: fixed by seed, member and step, whatever the scheduling."""
    return np.random.default_rng([seed, member, step, purpose])


def score_of(result: Any, metric: str | None) -> tuple[float | None, dict[str, Any]]:
    """Split `evaluate()`'s result into the score PBT ranks by and the metrics it stores."""
    if isinstance(result, dict):
        if metric is None or metric not in result:
            raise ValueError(
                f"evaluate() returned keys {sorted(result)} but the experiment's metric is {metric!r}: "
                f"set metric to one of the keys")
        metrics = {k: float(v) if isinstance(v, (int, float, np.number)) else v for k, v in result.items()}
        score = metrics[metric]
    else:
        score = float(result)
        metrics = {metric or "score": score}
    return (score if isinstance(score, float) and math.isfinite(score) else None), metrics


class Worker:
    """Leases members that are due, trains each one interval, reports, and exploits when ready."""

    def __init__(self, store: Store, name: str, worker_id: str, *, trainable: type | None = None,
                 poll: float = 0.1, on_interval: Callable[[], None] | None = None) -> None:
        self.store, self.name, self.id = store, name, worker_id
        self.exp = Experiment.from_spec(store.get_spec(name))
        self.trainable = resolve_trainable(trainable or self.exp.trainable, self.exp.paths)
        self.checkpoints = CheckpointStore(self.exp.checkpoints)
        self.poll, self.on_interval = poll, on_interval
        self.cache: dict[int, tuple[Trainable, int]] = {}  # member id -> (live trainable, store version)
        self._stop = threading.Event()

    # the loop
    def run(self) -> None:
        """Work until every member is done or failed."""
        beat = threading.Thread(target=self._heartbeat, daemon=True)
        beat.start()
        idle = 0.0
        try:
            while not self._stop.is_set():
                rec = self.store.claim(self.name, self.id, self.exp.lease, time.time(), self.exp.steps,
                                       barrier=self.exp.synchronous)
                if rec is None:
                    if not any(m.status == ACTIVE for m in self.store.members(self.name)):
                        return
                    idle = min(max(2 * idle, 0.002), self.poll)  # a barrier usually opens within milliseconds
                    time.sleep(idle)
                    continue
                idle = 0.0
                self.advance(rec)
        finally:
            self._stop.set()
            beat.join()

    def stop(self) -> None:
        self._stop.set()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.exp.lease / 3):
            try:
                self.store.renew(self.name, self.id, self.exp.lease, time.time())
            except Exception as exc:  # a missed beat is retried; the lease is long enough for several
                log.warning("worker %s could not renew its leases: %s", self.id, exc)

    def advance(self, rec: MemberRecord) -> None:
        """Move one leased member forward: one interval, or its pending decision."""
        restored = self._materialize(rec)
        if restored is None:
            return
        member, rec = restored
        if rec.step >= self.exp.steps:
            self._finish(rec, member)
            return
        if rec.pending:
            self._decide(rec, member, at_step=rec.step)
            return
        try:
            member.train()
            score, metrics = score_of(member.evaluate(), self.exp.metric)
        except Exception as exc:
            self._fail(rec, exc)
            return
        step = rec.step + 1
        self.store.report(self.name, rec.id, step, score, metrics, rec.hparams, time.time())
        rec = replace(rec, step=step, version=rec.version + 1, last_score=score)
        self.cache[rec.id] = (member, rec.version)
        if self.on_interval:
            self.on_interval()
        if step >= self.exp.steps:
            self._finish(rec, member)
        elif self.exp.exploit is not None and self.exp.ready.is_ready(step, rec.last_ready):
            if self.exp.synchronous:
                self._checkpoint(replace(rec, last_ready=step, pending=True), member)
                self.store.release(self.name, rec.id, self.id)
            else:
                self._decide(rec, member, at_step=None)

    # exploit and explore
    def _decide(self, rec: MemberRecord, member: Trainable, at_step: int | None) -> None:
        """Exploit (copy a better member's state) and explore, or continue; then checkpoint."""
        strategy = self.exp.exploit
        recent = self.store.recent_scores(self.name, strategy.window, at_step)
        population = [MemberView(id=m, step=rec.step, fitness=fitness(s[-1], self.exp.mode),
                                 recent=tuple(fitness(x, self.exp.mode) for x in s)) for m, s in recent.items()]
        me = next((v for v in population if v.id == rec.id), None)
        decision = Continue()
        if me is not None:
            decision = strategy.decide(me, population, decision_rng(self.exp.seed, rec.id, rec.step, EXPLOIT_RNG))
        if isinstance(decision, Exploit):
            source = self._load_source(decision.source, at_step)
            if source is not None:
                ckpt, state = source
                member.load_state_dict(state)
                new = self.exp.explore.explore(ckpt.hparams, self.exp.space,
                                               decision_rng(self.exp.seed, rec.id, rec.step, EXPLORE_RNG))
                member.set_hparams(new)
                self.store.record_exploit(self.name, Event(
                    member=rec.id, step=rec.step, source=decision.source, source_step=ckpt.step,
                    old_hparams=rec.hparams, new_hparams=new, time=time.time()))
                rec = replace(rec, hparams=new, version=rec.version + 1)
        rec = replace(rec, last_ready=rec.step, pending=False)
        self.cache[rec.id] = (member, rec.version)
        self._checkpoint(rec, member)
        self.store.release(self.name, rec.id, self.id)

    def _load_source(self, source: int, at_step: int | None) -> tuple[CheckpointRecord, Any] | None:
        """Pin and read the source's newest good checkpoint; None if it has none.

        If this worker holds the source live and idle with newer weights than its checkpoint, it
        checkpoints the source first, so the copy is as fresh as the paper's and still verifiable.
        """
        cached = self.cache.get(source)
        if cached is not None and at_step is None:
            row = self.store.member(self.name, source)
            if row.version == cached[1] and row.ckpt_version != row.version and row.worker in (None, self.id):
                self._checkpoint(row, cached[0])
        skip: tuple[int, ...] = ()
        while True:
            ckpt = self.store.pin_checkpoint(self.name, source, time.time() + self.exp.lease, at_step, skip)
            if ckpt is None:
                return None
            try:
                return ckpt, self.checkpoints.load(ckpt.key, ckpt.checksum)
            except CorruptCheckpoint as exc:
                log.warning("member %d: %s; trying its previous checkpoint", source, exc)
                skip += (ckpt.seq,)

    # state
    def _materialize(self, rec: MemberRecord) -> tuple[Trainable, MemberRecord] | None:
        """The member's live trainable: from this worker's memory, its checkpoint, or from scratch."""
        cached = self.cache.get(rec.id)
        if cached is not None and cached[1] == rec.version:
            return cached[0], rec
        self.cache.pop(rec.id, None)
        try:
            for i, ckpt in enumerate(self.store.checkpoints(self.name, rec.id)):
                try:
                    state = self.checkpoints.load(ckpt.key, ckpt.checksum)
                except CorruptCheckpoint as exc:
                    log.warning("member %d: %s; falling back to its previous checkpoint", rec.id, exc)
                    self.store.delete_checkpoint(self.name, rec.id, ckpt.seq, math.inf)
                    continue
                member = self.trainable(dict(ckpt.hparams), rec.seed)
                member.load_state_dict(state)
                member.set_hparams(dict(ckpt.hparams))
                if i > 0 or rec.version != rec.ckpt_version:
                    rec = self.store.rollback(self.name, rec.id, ckpt)
                self.cache[rec.id] = (member, rec.version)
                return member, rec
            if rec.step > 0 or rec.version != rec.ckpt_version:
                rec = self.store.rollback(self.name, rec.id, None)
            member = self.trainable(dict(rec.hparams), rec.seed)
        except Exception as exc:
            self._fail(rec, exc)
            return None
        self.cache[rec.id] = (member, rec.version)
        return member, rec

    def _checkpoint(self, rec: MemberRecord, member: Trainable) -> None:
        """Save the member's state as its newest checkpoint, then drop old unpinned ones."""
        key = self.checkpoints.key_for(self.name, rec.id, rec.step)
        checksum = self.checkpoints.save(key, member.state_dict())
        now = time.time()
        dropped = self.store.add_checkpoint(self.name, CheckpointRecord(
            member=rec.id, seq=0, step=rec.step, key=key, checksum=checksum, hparams=rec.hparams,
            last_ready=rec.last_ready, pending=rec.pending, created=now), rec.version, self.exp.keep_checkpoints, now)
        for old in dropped:
            self.checkpoints.delete(old)

    def _finish(self, rec: MemberRecord, member: Trainable) -> None:
        if rec.version != rec.ckpt_version:
            self._checkpoint(rec, member)
        self.store.finish(self.name, rec.id)
        self.cache.pop(rec.id, None)

    def _fail(self, rec: MemberRecord, exc: BaseException) -> None:
        """Count a trainable's error; the member retries from its checkpoint, up to max_failures."""
        self.cache.pop(rec.id, None)
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        status = self.store.record_failure(self.name, rec.id, error, self.exp.max_failures)
        if status == ACTIVE:
            log.warning("member %d raised at step %d (%s); retrying from its last checkpoint", rec.id, rec.step, error)
        else:
            log.error("member %d failed %d times and is marked failed: %s", rec.id, rec.failures + 1, error)
