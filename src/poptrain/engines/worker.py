"""The PBT worker loop, written once and shared by every engine that runs processes.

A worker leases a member that is due, trains it one interval, reports, and at a ready point
exploits and explores (or, in synchronous mode, waits at the generation barrier first).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import traceback
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Callable

from ..errors import CorruptCheckpoint, StorageError
from ..experiment import ExperimentSpec
from ..population import ACTIVE, Continue, Decision, Exploit
from ..store import CheckpointRecord, CheckpointStore, Event, LeaseLost, MemberRecord, Store, open_store
from ..store.base import EXPLOIT, EXPLOIT_AT_BARRIER
from ..trainable import Trainable, resolve_trainable
from .standings import read_standings
from .supervisor import Heartbeat

log = logging.getLogger("poptrain")

class MemberError(Exception):
    """The user's code (trainable, metric, custom explore) raised for this member."""


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


def user(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run the user's code; whatever it raises becomes a MemberError (the member's failure)."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        raise MemberError("".join(traceback.format_exception_only(type(exc), exc)).strip()) from exc


class Worker:
    """Leases members that are due, trains each one interval, reports, and exploits when ready.

    `max_held` caps how many members this worker keeps leased (the local engine gives each worker
    its share, so the population spreads evenly); `cache_size` caps the live trainables it keeps.
    """

    def __init__(self, store: Store, name: str, worker_id: str, *, trainable: type | None = None,
                 poll: float = 0.1, on_interval: Callable[[], None] | None = None,
                 max_held: int | None = None, cache_size: int | None = None, current: Any = None) -> None:
        self.store, self.name, self.id = store, name, worker_id
        self.exp = ExperimentSpec.from_spec(store.get_spec(name), trainable=trainable)  # a live class wins over its path
        self.policy = self.exp.policy
        self.trainable = resolve_trainable(trainable or self.exp.trainable, self.exp.paths)
        self.checkpoints = CheckpointStore(self.exp.checkpoints)
        self.poll, self.on_interval, self.max_held = poll, on_interval, max_held
        self.cache_size = cache_size or max(8, 2 * (max_held or 0))
        self.cache: OrderedDict[int, tuple[Trainable, int]] = OrderedDict()  # id -> (trainable, version)
        self.held: set[int] = set()
        self.current = current  # a shared integer the local engine reads if this process dies
        self._generation: tuple[Any, dict[int, Decision]] | None = None  # a synchronous step's picks

    # the loop
    def run(self) -> None:
        """Work until every member is done or failed."""
        idle = 0.0
        with Heartbeat(self.store, self.name, self.id, self.exp.lease):
            while True:
                take_new = self.max_held is None or len(self.held) < self.max_held
                rec = self.store.claim(self.name, self.id, self.exp.lease, time.time(), self.exp.synchronous,
                                       take_new=take_new)
                if rec is None:
                    members = self.store.members(self.name)
                    if not any(m.status == ACTIVE for m in members):
                        return
                    self.held &= {m.id for m in members if m.worker == self.id}  # leases lost while busy
                    idle = min(max(2 * idle, 0.002), self.poll)  # a barrier usually opens within milliseconds
                    time.sleep(idle)
                    continue
                idle = 0.0
                self.advance(rec)

    def advance(self, rec: MemberRecord) -> None:
        """Move one leased member forward: one interval, or its pending decision."""
        self.held.add(rec.id)
        if self.current is not None:
            self.current.value = rec.id
        try:
            self._advance(rec)
        except LeaseLost as exc:
            log.warning("%s; worker %s drops it", exc, self.id)
            self._forget(rec.id)
        except MemberError as exc:
            self._fail(rec, str(exc))
        finally:
            if self.current is not None:
                self.current.value = -1
            self._trim_cache()

    def _advance(self, rec: MemberRecord) -> None:
        member, rec = self._materialize(rec)
        if rec.step >= self.exp.steps:
            self._finish(rec, member)
            return
        if rec.pending:
            self._decide(rec, member, at_step=rec.step)
            return
        scheduled = self.exp.scheduled(rec.step)
        if scheduled is not None and scheduled != rec.hparams:
            user(member.set_hparams, dict(scheduled))
            rec = replace(rec, hparams=scheduled)
        user(member.train)
        score, metrics = user(score_of, user(member.evaluate), self.exp.metric)
        step = rec.step + 1
        self.store.report(self.name, rec.id, self.id, step, score, metrics, rec.hparams, time.time())
        rec = replace(rec, step=step, version=rec.version + 1, last_score=score)
        self._remember(rec, member)
        if self.on_interval:
            self.on_interval()
        if step >= self.exp.steps:
            self._finish(rec, member)
        elif self.policy.is_ready(step, rec.last_ready):
            if self.exp.exploit is None:  # no decision to take; the checkpoint keeps the work resumable
                rec = replace(rec, last_ready=step)
                self._checkpoint(rec, member)
            elif self.exp.synchronous:  # wait at the barrier; any worker takes the decision once it opens
                self._checkpoint(replace(rec, last_ready=step, pending=True), member)
                self._release(rec.id)
            else:
                self._decide(rec, member, at_step=None)

    # exploit and explore
    def _decide(self, rec: MemberRecord, member: Trainable, at_step: int | None) -> None:
        """Take the policy's decision: exploit (copy a source's state, explore) or continue; then checkpoint."""
        pick = self._pick(rec, at_step)
        exploited = False
        source = self._load_source(pick.source, at_step) if isinstance(pick, Exploit) else None
        if isinstance(pick, Exploit) and source is None:
            log.info("member %d: source %d has no checkpoint to copy yet; it continues", rec.id, pick.source)
        if source is not None:
            ckpt, state = source
            new = user(self.policy.explore_from, rec.id, rec.step, ckpt.hparams)
            user(member.load_state_dict, state)
            user(member.set_hparams, new)
            self.store.record_exploit(self.name, Event(
                member=rec.id, step=rec.step, source=ckpt.member, source_step=ckpt.step, old_hparams=rec.hparams,
                new_hparams=new, time=time.time(), source_hparams=ckpt.hparams,
                kind=EXPLOIT if at_step is None else EXPLOIT_AT_BARRIER), self.id)
            rec = replace(rec, hparams=new, version=rec.version + 1)
            exploited = True
        rec = replace(rec, last_ready=rec.step, pending=False)
        self._remember(rec, member)
        if exploited or at_step is None:
            self._checkpoint(rec, member)
        else:  # synchronous and unchanged: the pending checkpoint already holds this state
            self.store.mark_ready(self.name, rec.id, self.id, rec.step)
        self._release(rec.id)

    def _pick(self, rec: MemberRecord, at_step: int | None) -> Decision:
        """The policy's pick for this member: alone (asynchronous) or as part of its generation."""
        if at_step is None:
            standings = read_standings(self.store, self.name, self.exp, None)
            me = standings.view(rec.id)
            return Continue() if me is None else self.policy.choose(me, standings, rec.step)
        # A generation is ranked once: every worker computes the same picks from the same scores.
        ids, scores = self.store.scores(self.name, at_step)
        key = (at_step, ids.tobytes(), scores.tobytes())
        if self._generation is None or self._generation[0] != key:
            standings = read_standings(self.store, self.name, self.exp, at_step, everyone=True)
            self._generation = (key, self.policy.choose_generation(standings, at_step))
        return self._generation[1].get(rec.id, Continue())

    def _load_source(self, source: int, at_step: int | None) -> tuple[CheckpointRecord, Any] | None:
        """Pin and read the source's newest good checkpoint; None if it has none.

        Asynchronously, if this worker holds the source live with newer weights than its
        checkpoint, it checkpoints the source first, so the copy is as fresh as the paper's and
        still verifiable. Synchronously the source's state at the barrier is its pending
        checkpoint (written before any decision at that step).
        """
        cached = self.cache.get(source)
        if cached is not None and at_step is None and source in self.held:
            row = self.store.member(self.name, source)
            if row.version == cached[1] and row.ckpt_version != row.version and row.worker == self.id:
                try:
                    self._checkpoint(row, cached[0])
                except LeaseLost:
                    self._forget(source)
        skip: tuple[int, ...] = ()
        while True:
            until = time.time() + self.exp.lease
            ckpt = self.store.pin_checkpoint(self.name, source, until, at_step, skip,
                                             pending=True if at_step is not None else None)
            if ckpt is None:
                return None
            try:
                return ckpt, self.checkpoints.load(ckpt.key, ckpt.checksum)
            except CorruptCheckpoint as exc:
                log.warning("member %d: %s; trying its previous checkpoint", source, exc)
                skip += (ckpt.seq,)
            except Exception as exc:  # intact bytes this process cannot read (a pickle without the opt-in)
                log.warning("member %d: checkpoint %s cannot be read (%s); not copying it", source, ckpt.key, exc)
                return None
            finally:
                self.store.unpin_checkpoint(self.name, source, ckpt.seq, until)

    # state
    def _materialize(self, rec: MemberRecord) -> tuple[Trainable, MemberRecord]:
        """The member's live trainable: from this worker's memory, its checkpoint, or from scratch."""
        cached = self.cache.get(rec.id)
        if cached is not None and cached[1] == rec.version:
            self.cache.move_to_end(rec.id)
            return cached[0], rec
        self.cache.pop(rec.id, None)
        for i, ckpt in enumerate(self.store.checkpoints(self.name, rec.id)):
            try:
                state = self.checkpoints.load(ckpt.key, ckpt.checksum)
            except CorruptCheckpoint as exc:
                log.warning("member %d: %s; falling back to its previous checkpoint", rec.id, exc)
                if self.store.delete_checkpoint(self.name, rec.id, ckpt.seq, math.inf):
                    self.checkpoints.delete(ckpt.key)
                continue
            except Exception as exc:  # intact bytes this process cannot read (a pickle without the opt-in)
                raise MemberError(f"checkpoint {ckpt.key} cannot be read: {exc}") from exc
            member = user(self.trainable, dict(ckpt.hparams), rec.seed)
            user(member.load_state_dict, state)
            user(member.set_hparams, dict(ckpt.hparams))
            if i > 0 or rec.version != rec.ckpt_version:
                rec = self.store.rollback(self.name, rec.id, self.id, ckpt)
            self._remember(rec, member)
            return member, rec
        if rec.step > 0 or rec.version != rec.ckpt_version:
            rec = self.store.rollback(self.name, rec.id, self.id, None)
        member = user(self.trainable, dict(rec.hparams), rec.seed)
        self._remember(rec, member)
        return member, rec

    def _checkpoint(self, rec: MemberRecord, member: Trainable) -> None:
        """Save the member's state as its newest checkpoint, then drop old unpinned ones."""
        key = self.checkpoints.key_for(self.name, rec.id, rec.step)
        state = user(member.state_dict)
        try:
            checksum = self.checkpoints.save(key, state)
        except StorageError:
            raise  # a full or read-only disk is not the member's fault: the worker stops and says where
        except Exception as exc:  # a state the checkpoint format cannot carry is the member's code's
            raise MemberError("".join(traceback.format_exception_only(type(exc), exc)).strip()) from exc
        now = time.time()
        try:
            dropped = self.store.add_checkpoint(self.name, CheckpointRecord(
                member=rec.id, seq=0, step=rec.step, key=key, checksum=checksum, hparams=rec.hparams,
                last_ready=rec.last_ready, pending=rec.pending, created=now), rec.version,
                self.exp.keep_checkpoints, now, self.id)
        except LeaseLost:
            self.checkpoints.delete(key)
            raise
        for old in dropped:
            self.checkpoints.delete(old)

    def _finish(self, rec: MemberRecord, member: Trainable) -> None:
        if rec.version != rec.ckpt_version:
            self._checkpoint(rec, member)
        self.store.finish(self.name, rec.id, self.id)
        self._forget(rec.id)

    def _fail(self, rec: MemberRecord, error: str) -> None:
        """Count a user-code error; the member retries from its checkpoint, up to max_failures."""
        self._forget(rec.id)
        try:
            status = self.store.record_failure(self.name, rec.id, self.id, error, self.exp.max_failures)
        except LeaseLost:
            return
        if status == ACTIVE:
            log.warning("member %d raised at step %d (%s); retrying from its last checkpoint", rec.id, rec.step, error)
        else:
            log.error("member %d failed more than %d times and is marked failed: %s", rec.id,
                      self.exp.max_failures, error)

    # bookkeeping
    def _remember(self, rec: MemberRecord, member: Trainable) -> None:
        self.cache[rec.id] = (member, rec.version)
        self.cache.move_to_end(rec.id)

    def _release(self, member: int) -> None:
        self.store.release(self.name, member, self.id)
        self.held.discard(member)

    def _forget(self, member: int) -> None:
        self.cache.pop(member, None)
        self.held.discard(member)

    def _trim_cache(self) -> None:
        """Keep at most `cache_size` live trainables, dropping the least recently used idle ones."""
        for member in list(self.cache):
            if len(self.cache) <= self.cache_size:
                return
            if member not in self.held:
                del self.cache[member]


def join(storage: str, name: str, worker_id: str | None = None) -> None:
    """Join a running experiment as one more worker (as `poptrain worker` does on any host)."""
    Worker(open_store(storage, create=False, wait=True), name, worker_id or f"{socket.gethostname()}-{os.getpid()}").run()
