"""One process's connection to a stored population: ask for a member, tell each interval, take decisions."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from ..errors import CorruptCheckpoint, PoptrainError, StorageError
from ..spec import ExperimentSpec
from ..speccode import check_stored_code
from ..heartbeat import Heartbeat
from ..outcome import MemberError, score_of, user
from ..records import ACTIVE, Continue, Decision, Exploit, Finished, Hparams, Released, Standings
from ..standings import read_standings
from ..store import CheckpointRecord, CheckpointStore, LeaseLost, MemberRecord, Store
from .generation import GenerationMemo
from .step import BARRIER, FINISH, SAVE, TRAIN_ON, exploit_event, next_move

log = logging.getLogger("poptrain")

REDUCTIONS: dict[str, Callable[[list[float]], float]] = {"mean": lambda xs: sum(xs) / len(xs), "min": min, "max": max}


def check_reduce(reduce: str | None) -> None:
    """Refuse a reduction of a group's scores that tell does not know, in one line."""
    if reduce is not None and reduce not in REDUCTIONS:
        raise PoptrainError(f"tell(reduce={reduce!r}) is not a reduction: use one of {sorted(REDUCTIONS)} or None "
                            f"(rank 0's score)")


@dataclass
class Member:
    """A member leased to this process: what to train next, and from which state.

    `state` is the state to start from (None: start fresh, or the caller's live copy is
    current); `hparams` are the hyperparameters of the next interval; `running` turns false once
    the member reached its budget or left this process (ask for another then). `pending` is true
    only for a member handed out by `ask(decide=False)` that waits for its synchronous
    generation's decision: `decide` it before training.
    """

    id: int
    seed: int
    step: int
    steps: int
    hparams: Hparams
    state: Any = None
    pending: bool = False
    running: bool = True
    record: MemberRecord = field(repr=False, default=None)  # type: ignore[assignment]
    connection: "Connection" = field(repr=False, default=None, compare=False)  # type: ignore[assignment]

    def report(self, result: Any, state: Any = None, reduce: str | None = None) -> Decision:
        """`tell` this member's interval through the connection that handed it out (see `Connection.tell`)."""
        return self.connection.tell(self, result, state, reduce=reduce)

    @property
    def version(self) -> int:
        """A counter of the member's changes: a live copy made at this version is current."""
        return self.record.version

    def advance(self, score: float | None) -> None:
        """Move the member one told interval on: its step, version and last score."""
        self.step = self.record.step + 1
        self.record = replace(self.record, step=self.step, version=self.record.version + 1, last_score=score)


class Connection:
    """One process's connection to a stored population: `ask` for a member, `tell` after each interval.

    `max_held` caps how many members this process keeps leased at once (an engine gives each
    worker its share, so the population spreads evenly). Code the stored spec names beyond its
    trainable's module is imported only with `trust_spec_code` (see `poptrain.speccode`).
    """

    def __init__(self, store: Store, name: str, worker_id: str | None = None, *, trainable: Any = None,
                 max_held: int | None = None, poll: float = 0.1, trust_spec_code: bool = False) -> None:
        self.store, self.name = store, name
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        stored = store.get_spec(name)
        check_stored_code(stored, name, trust_spec_code)
        self.spec = ExperimentSpec.from_spec(stored, trainable=trainable)  # a live class wins
        self.policy = self.spec.policy
        self.checkpoints = CheckpointStore(self.spec.checkpoints)
        self.max_held, self.poll = max_held, poll
        self.held: set[int] = set()
        self.live: dict[int, tuple[int, Any]] = {}  # member -> (version, state or callable) the caller holds
        self.generations = GenerationMemo(self.policy)  # the synchronous step this process last ranked
        self._heartbeat: Heartbeat | None = None

    # the connection
    def __enter__(self) -> "Connection":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Keep this process's leases alive on a thread (ask starts it too)."""
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.store, self.name, self.id, self.spec.lease).__enter__()
            weakref.finalize(self, self._heartbeat.stop)  # a connection dropped without close() stops renewing

    def close(self) -> None:
        """Give back every member this process holds and stop renewing leases."""
        for member in list(self.held):
            try:
                self.store.release(self.name, member, self.id)
            except LeaseLost:
                pass
        self.held.clear()
        if self._heartbeat is not None:
            self._heartbeat.__exit__()
            self._heartbeat = None

    # ask
    def ask(self, wait: bool = True, live: Mapping[int, int] | None = None, decide: bool = True,
            on_wait: Callable[[], None] | None = None) -> Member | None:
        """Lease the member that is most due and return it ready to train; None once every member is done.

        Without `wait`, None also means nothing is due right now. `live` maps members whose state
        the caller holds to their version: such a member comes back without `state` to load.
        A member past a synchronous barrier gets its generation's decision first (its `state` is
        then the copied one), unless `decide` is false: then it comes back `pending`. `on_wait` is
        called each time nothing is due yet and the wait goes on.
        """
        self.start()
        idle = 0.0
        while True:
            take_new = self.max_held is None or len(self.held) < self.max_held
            rec = self.store.claim(self.name, self.id, self.spec.lease, time.time(), self.spec.synchronous,
                                   take_new=take_new)
            if rec is not None:
                idle = 0.0
                member = self._ready(rec, live or {}, decide)
                if member is not None:
                    return member
                continue
            members = self.store.members(self.name)
            if not any(m.status == ACTIVE for m in members) or not wait:
                return None
            self.held &= {m.id for m in members if m.worker == self.id}  # leases lost while busy
            idle = min(max(2 * idle, 0.002), self.poll)  # a barrier usually opens within milliseconds
            if on_wait is not None:
                on_wait()
            time.sleep(idle)

    def _ready(self, rec: MemberRecord, live: Mapping[int, int], decide: bool) -> Member | None:
        """The claimed member as the caller trains it next (its state loaded, a pending decision taken)."""
        self.held.add(rec.id)
        try:
            if live.get(rec.id) == rec.version:  # the caller's own copy is current
                state = None
            elif self.live.get(rec.id, (None,))[0] == rec.version:  # what it last told us is current
                told = self.live[rec.id][1]
                state = user(told) if callable(told) else told
            else:
                state, rec = self._restore(rec)
            member = Member(rec.id, rec.seed, rec.step, self.spec.steps, dict(rec.hparams), state,
                            pending=rec.pending, record=rec, connection=self)
            if rec.step >= self.spec.steps:
                self._finish(member, state if state is not None else self.live.get(rec.id, (0, None))[1])
                return None
            if member.pending and decide:  # past a synchronous barrier: its decision comes first
                decision = self.decide(member, self.live.get(rec.id, (0, state))[1] if state is None else state)
                if isinstance(decision, Exploit):
                    member.state = decision.state
            scheduled = self.spec.scheduled(member.step)
            if scheduled is not None and scheduled != member.hparams:
                member.hparams = dict(scheduled)
                member.record = replace(member.record, hparams=dict(scheduled))
            return member
        except LeaseLost as exc:
            log.warning("%s; worker %s drops it", exc, self.id)
            self._forget(rec.id)
            return None

    def _restore(self, rec: MemberRecord) -> tuple[Any, MemberRecord]:
        """The member's newest good checkpoint (falling back past corrupt ones), or None to start fresh."""
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
            if i > 0 or rec.version != rec.ckpt_version:
                rec = self.store.rollback(self.name, rec.id, self.id, ckpt)
            return state, replace(rec, hparams=dict(ckpt.hparams))
        if rec.step > 0 or rec.version != rec.ckpt_version:
            rec = self.store.rollback(self.name, rec.id, self.id, None)
        return None, rec

    # tell
    def decide(self, member: Member, state: Any = None, apply: Callable[[Exploit], None] | None = None) -> Decision:
        """Take the synchronous generation's decision for a `pending` member (see `ask(decide=False)`)."""
        member.pending = False
        return self._decide(member, state, at_step=member.step, apply=apply)

    def tell(self, member: Member, result: Any, state: Any = None,
             apply: Callable[[Exploit], None] | None = None, reduce: str | None = None) -> Decision:
        """Report one interval's result (a score, or a dict holding the metric) and take the policy's decision.

        Returns Continue (train on), Exploit (load `decision.state`; `member.hparams` are already
        the explored ones), Finished (the member reached its budget) or Released (it left this
        process: a synchronous barrier, or its lease was taken over); after the last two, ask
        again. `state` (or a callable returning it) is saved only when a checkpoint is due.
        With `apply`, an exploit is applied to the caller's model before its checkpoint, which
        then holds the model as it is after the copy (by default: the copied state).
        `reduce` ("mean", "min", "max") reduces the score across the ranks of a process-group
        member (see `GroupConnection`); a single process is a group of one.
        """
        check_reduce(reduce)
        score, metrics = user(score_of, result, self.spec.metric)
        rec = member.record
        try:
            self.store.report(self.name, rec.id, self.id, rec.step + 1, score, metrics, rec.hparams, time.time())
        except LeaseLost as exc:
            return self._lost(member, exc)
        member.advance(score)
        rec = member.record
        step = rec.step
        self.live[rec.id] = (rec.version, state)
        try:
            move = next_move(self.spec, step, rec.last_ready)
            if move == FINISH:
                self._finish(member, state)
                return Finished()
            if move == TRAIN_ON:
                return Continue()
            if move == SAVE:  # no decision to take; the checkpoint keeps the work resumable
                member.record = replace(rec, last_ready=step)
                self._checkpoint(member.record, state)
                return Continue()
            if move == BARRIER:  # wait at the barrier; whoever asks takes the decision once it opens
                self._checkpoint(replace(rec, last_ready=step, pending=True), state)
                self.release(member)
                return Released()
            return self._decide(member, state, at_step=None, apply=apply)
        except LeaseLost as exc:
            return self._lost(member, exc)

    def fail(self, member: Member, error: str) -> str:
        """Count a failure of the member's code; it is retried from its checkpoint up to max_failures. Its status."""
        self._forget(member.id)
        member.running = False
        try:
            status = self.store.record_failure(self.name, member.id, self.id, error, self.spec.max_failures)
        except LeaseLost:
            return ACTIVE
        if status == ACTIVE:
            log.warning("member %d raised at step %d (%s); retrying from its last checkpoint", member.id, member.step,
                        error)
        else:
            log.error("member %d failed more than %d times and is marked failed: %s", member.id,
                      self.spec.max_failures, error)
        return status

    def release(self, member: Member) -> None:
        """Give the member back to the population (another process, or a later ask, continues it).

        What it was last told of the member is forgotten: the caller's model may train another
        member next, so a later ask restores this one from its checkpoint.
        """
        member.running = False
        self.store.release(self.name, member.id, self.id)
        self._forget(member.id)

    # exploit and explore
    def _decide(self, member: Member, state: Any, at_step: int | None,
                apply: Callable[[Exploit], None] | None = None) -> Decision:
        """Take the policy's decision at a ready point; record and checkpoint it; keep the member leased."""
        rec = member.record
        pick, standings = self._pick(rec, at_step)
        source = self._load_source(pick.source, at_step) if isinstance(pick, Exploit) else None
        if isinstance(pick, Exploit) and source is None:
            log.info("member %d: source %d has no checkpoint to copy yet; it continues", rec.id, pick.source)
        decision: Decision = Continue()
        if source is not None:
            ckpt, copied = source
            # the pick's own hyperparameters if its rule named them, else explored (with the standings it saw,
            # or with its generation's explores)
            if at_step is None:
                taken = user(self.policy.complete, rec.id, rec.step, pick, lambda _: ckpt.hparams, standings)
            else:
                taken = user(self.generations.complete, rec.id, pick, ckpt.hparams)
            new = taken.hparams
            self.store.record_exploit(self.name, exploit_event(
                rec.id, rec.step, ckpt.member, ckpt.step, rec.hparams, new, ckpt.hparams, at_barrier=at_step is not None),
                self.id)
            rec = replace(rec, hparams=new, version=rec.version + 1)
            member.hparams = dict(new)
            decision = Exploit(ckpt.member, dict(new), copied)
            if apply is not None:  # the caller's model after the copy is what the checkpoint holds
                apply(decision)
            else:
                state = copied
        rec = replace(rec, last_ready=rec.step, pending=False)
        member.record = rec
        self.live[rec.id] = (rec.version, state)
        if isinstance(decision, Exploit) or at_step is None:
            self._checkpoint(rec, state)
        else:  # synchronous and unchanged: the pending checkpoint already holds this state
            self.store.mark_ready(self.name, rec.id, self.id, rec.step)
        return decision

    def _pick(self, rec: MemberRecord, at_step: int | None) -> tuple[Decision, Standings | None]:
        """The policy's pick for this member, alone (asynchronously, with the standings it read) or as part of
        its generation (ranked once per process: every process computes the same picks from the same scores)."""
        if at_step is None:
            standings = read_standings(self.store, self.name, self.spec, None)
            me = standings.view(rec.id)
            return (Continue() if me is None else self.policy.choose(me, standings, rec.step)), standings
        ids, scores = self.store.scores(self.name, at_step)
        self.generations.generation((at_step, ids.tobytes(), scores.tobytes()), at_step,
                                    lambda: read_standings(self.store, self.name, self.spec, at_step, everyone=True))
        return self.generations.pick(rec.id), None

    def _load_source(self, source: int, at_step: int | None) -> tuple[CheckpointRecord, Any] | None:
        """Pin and read the source's newest good checkpoint; None if it has none.

        Asynchronously, if this process holds the source live with newer weights than its
        checkpoint, it checkpoints the source first, so the copy is as fresh as the paper's and
        still verifiable. Synchronously the source's state at the barrier is its pending
        checkpoint (written before any decision at that step).
        """
        if at_step is None and source in self.held and source in self.live:
            row = self.store.member(self.name, source)
            version, state = self.live[source]
            if row.version == version and row.ckpt_version != row.version and row.worker == self.id:
                try:
                    self._checkpoint(row, state)
                except LeaseLost:
                    self._forget(source)
        skip: tuple[int, ...] = ()
        while True:
            until = time.time() + self.spec.lease
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
                self.store.unpin_checkpoint(self.name, source, ckpt.seq, ckpt.pinned_until)

    # state
    def _checkpoint(self, rec: MemberRecord, state: Any) -> None:
        """Save the member's state as its newest checkpoint, then drop old unpinned ones."""
        if callable(state):
            state = user(state)
        key = self.checkpoints.key_for(self.name, rec.id, rec.step)
        try:
            checksum = self.checkpoints.save(key, state)
        except StorageError:
            raise  # a full or read-only disk is not the member's fault: the process stops and says where
        except Exception as exc:  # a state the checkpoint format cannot carry is the member's code's
            raise MemberError.of(exc) from exc
        now = time.time()
        try:
            dropped = self.store.add_checkpoint(self.name, CheckpointRecord(
                member=rec.id, seq=0, step=rec.step, key=key, checksum=checksum, hparams=rec.hparams,
                last_ready=rec.last_ready, pending=rec.pending, created=now), rec.version,
                self.spec.keep_checkpoints, now, self.id)
        except LeaseLost:
            self.checkpoints.delete(key)
            raise
        for old in dropped:
            self.checkpoints.delete(old)

    def _finish(self, member: Member, state: Any) -> None:
        rec = member.record
        if rec.version != rec.ckpt_version:
            self._checkpoint(rec, state)
        self.store.finish(self.name, rec.id, self.id)
        member.running = False
        self._forget(rec.id)

    def _lost(self, member: Member, exc: LeaseLost) -> Decision:
        log.warning("%s; worker %s drops it", exc, self.id)
        member.running = False
        self._forget(member.id)
        return Released()

    def _forget(self, member: int) -> None:
        self.live.pop(member, None)
        self.held.discard(member)
