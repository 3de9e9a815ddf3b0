"""Ask/tell for a process that holds the whole population as one batched model.

The same per-interval step as `Connection.tell` (`step.next_move`), taken for every member
at once: the reports go in one transaction, the members decide together on the scores at the
step (a synchronous generation, with no barrier to wait at since one process holds them all),
and one checkpoint file holds the whole population, each member's record pointing at its part.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from typing import Any, Protocol, Sequence

from ..errors import PoptrainError, SpecError
from ..spec import ExperimentSpec
from ..outcome import score_of, user
from ..records import ACTIVE, Exploit, Hparams
from ..standings import read_standings
from ..store import CheckpointRecord, CheckpointStore, MemberRecord, Store
from ..store.checkpoints import SHARDS
from .step import DECIDE, FINISH, TRAIN_ON, exploit_event, next_move

log = logging.getLogger("poptrain")

PART = "#member="  # a population file's key, then this, then the member's index in the batch


class BatchedMembers(Protocol):
    """What a batched model gives the batched tell (a `poptrain.torch.BatchedTrainable` has it all)."""

    def set_hparams(self, member: int, hparams: Hparams) -> None: ...

    def copy_members(self, dsts: Sequence[int], srcs: Sequence[int]) -> None: ...

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


def check_layout(state: Any, sizes: Sequence[int] | None) -> None:
    """Refuse, in one line, a population file written in another layout: other shard sizes, or (None) unsharded."""
    saved = state.get(SHARDS) if isinstance(state, dict) else None
    if saved == (list(sizes) if sizes else None):
        return

    def named(layout: Any) -> str:
        return f"in {len(layout)} shards of {', '.join(map(str, layout))} members" if layout else "unsharded"

    fix = f"Vectorized(shards={len(saved)})" if saved else "the vectorized engine without shards"
    raise SpecError(f"experiment's population checkpoint was written {named(saved)}, not {named(sizes)}: "
                    f"resume it with {fix}")


class LiveBatch:
    """Holds every member of a stored population for one batched model: restore, tell, decide, checkpoint."""

    def __init__(self, store: Store, name: str, spec: ExperimentSpec, holder: str) -> None:
        self.store, self.name, self.spec, self.id = store, name, spec, holder
        self.policy = spec.policy
        self.checkpoints = CheckpointStore(spec.checkpoints)
        self.ids: list[int] = []
        self.hparams: list[Hparams] = []
        self.versions: list[int] = []
        self.step = 0
        self.last_ready = 0

    def hold_all(self) -> list[MemberRecord]:
        """Lease every active member (none left: the run is done); other workers holding some is an error."""
        held = self.store.claim_all(self.name, self.id, self.spec.lease, time.time())
        active = [m for m in self.store.members(self.name) if m.status == ACTIVE]
        if len(held) < len(active):
            raise PoptrainError(f"experiment {self.name!r}: other workers hold some members; a batched model "
                                f"needs the whole population")
        return held

    def fail_all(self, members: list[MemberRecord], error: str) -> None:
        """Charge every member one failure: the batched code that raised holds them all."""
        statuses = {self.store.record_failure(self.name, m.id, self.id, error, self.spec.max_failures)
                    for m in members}
        if ACTIVE in statuses:
            log.warning("the batched population raised (%s); retrying every member from its last checkpoint", error)
        else:
            log.error("the batched population failed more than %d times; every member is marked failed: %s",
                      self.spec.max_failures, error)

    def start(self, members: list[MemberRecord], batch: BatchedMembers) -> None:
        """Load the newest population file every member has a record of (or start at step 0) into `batch`."""
        members = self._restore(members, batch)
        self.ids = [m.id for m in members]
        self.hparams = [dict(m.hparams) for m in members]
        self.versions = [m.version for m in members]
        self.step, self.last_ready = members[0].step, members[0].last_ready
        if self.step == 0:  # a population file from the start marks the run as batched, to resume batched
            self._checkpoint(batch)

    def schedule(self, batch: BatchedMembers) -> None:
        """Write the spec's scheduled hyperparameters for the next interval into the members that differ."""
        scheduled = self.spec.scheduled(self.step)
        if scheduled is None:
            return
        for i in range(len(self.ids)):
            if self.hparams[i] != scheduled:
                user(batch.set_hparams, i, scheduled)
                self.hparams[i] = dict(scheduled)

    def tell(self, results: Sequence[Any], batch: BatchedMembers) -> bool:
        """Report every member's interval, then take the step's move for all of them; True once they finished."""
        self.step += 1
        rows = []
        for i, result in enumerate(results):
            score, metrics = user(score_of, result, self.spec.metric)
            rows.append((self.ids[i], score, metrics, self.hparams[i]))
        self.store.report_many(self.name, self.id, self.step, rows, time.time())
        self.versions = [v + 1 for v in self.versions]
        move = next_move(self.spec, self.step, self.last_ready, holds_generation=True)
        if move == FINISH:
            self._checkpoint(batch)
            for m in self.ids:
                self.store.finish(self.name, m, self.id)
            return True
        if move == TRAIN_ON:
            return False
        self.last_ready = self.step
        if move == DECIDE:
            self._decide(batch)
        self._checkpoint(batch)
        return False

    def _decide(self, batch: BatchedMembers) -> None:
        """Every member decides on the scores at this step; copies read the state from before any copy."""
        standings = read_standings(self.store, self.name, self.spec, at_step=self.step, everyone=True)
        index = {m: i for i, m in enumerate(self.ids)}
        decisions = user(self.policy.decide_generation, standings, self.step,
                         lambda source: self.hparams[index[source]] if source in index else None)
        moves = [(i, index[d.source], d.hparams) for i, m in enumerate(self.ids)
                 if isinstance(d := decisions.get(m), Exploit)]
        if not moves:
            return
        user(batch.copy_members, [i for i, _, _ in moves], [src for _, src, _ in moves])
        before = [dict(h) for h in self.hparams]
        self.store.record_exploits(self.name, [
            exploit_event(self.ids[i], self.step, self.ids[src], self.step, before[i], new, before[src], at_barrier=True)
            for i, src, new in moves], self.id)
        for i, _, new in moves:
            user(batch.set_hparams, i, new)
            self.hparams[i] = new
            self.versions[i] += 1

    def _checkpoint(self, batch: BatchedMembers) -> None:
        """One file for the whole population; each member's record points at its part of it."""
        key = f"{self.name}/population-s{self.step:06d}-{uuid.uuid4().hex[:12]}.ckpt"
        checksum = self.checkpoints.save(key, user(batch.state_dict))
        now = time.time()
        records = [(CheckpointRecord(member=m, seq=0, step=self.step, key=f"{key}{PART}{i}", checksum=checksum,
                                     hparams=self.hparams[i], last_ready=self.last_ready, pending=False, created=now),
                    self.versions[i]) for i, m in enumerate(self.ids)]
        dropped = Counter(old.partition(PART)[0] for old in self.store.add_checkpoints(
            self.name, records, self.spec.keep_checkpoints, now, self.id))
        for path, count in dropped.items():
            if count == len(self.ids):  # no member's record points at it any more
                self.checkpoints.delete(path)

    def _restore(self, members: list[MemberRecord], batch: BatchedMembers) -> list[MemberRecord]:
        """Continue from the newest population file every member has a record of, or from step 0."""
        if all(m.step == 0 and m.version == m.ckpt_version for m in members):
            return members
        by_file: list[dict[str, CheckpointRecord]] = []
        for m in members:
            records = self.store.checkpoints(self.name, m.id)
            if any(PART not in c.key for c in records):
                raise PoptrainError(f"experiment {self.name!r} was trained by another engine (its checkpoints are "
                                    f"one member's each): resume it with that engine")
            by_file.append({c.key.partition(PART)[0]: c for c in records})
        shared = set.intersection(*(set(files) for files in by_file))
        if not shared:  # interrupted before its first complete checkpoint: start over
            return [self.store.rollback(self.name, m.id, self.id, None) for m in members]
        newest = max(shared, key=lambda f: (by_file[0][f].step, by_file[0][f].created))
        ckpt = by_file[0][newest]
        state = self.checkpoints.load(newest, ckpt.checksum)
        check_layout(state, getattr(batch, "shard_sizes", None))
        user(batch.load_state_dict, state)
        for i, files in enumerate(by_file):
            user(batch.set_hparams, i, files[newest].hparams)
        return [self.store.rollback(self.name, m.id, self.id, files[newest]) for m, files in zip(members, by_file)]
