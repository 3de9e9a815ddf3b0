"""What every population store remembers, and the interface the engines and readers use."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from ..records import FAILED, Hparams, best_members


@dataclass(frozen=True)
class MemberRecord:
    """A member's row: where it stands, who holds it, and whether its checkpoint is current."""

    id: int
    seed: int
    hparams: Hparams
    initial_hparams: Hparams
    step: int = 0
    last_ready: int = 0
    pending: bool = False  # synchronous mode: waiting at a generation barrier for its decision
    status: str = "active"
    worker: str | None = None
    lease_until: float = 0.0
    version: int = 0  # bumped on every change of the member's state
    ckpt_version: int = 0  # the version its newest checkpoint (or step 0) holds; == version means current
    last_score: float | None = None
    failures: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)  # slots: a long run's readers hold a million of these
class Report:
    """One evaluation of one member after `step` intervals."""

    member: int
    step: int
    score: float | None  # None when the metric was NaN or infinite
    metrics: dict[str, Any]
    hparams: Hparams
    time: float


@dataclass(frozen=True)
class Event:
    """An exploit (and the explore after it): the lineage edge from `source` to `member`."""

    member: int
    step: int
    source: int
    source_step: int
    old_hparams: Hparams
    new_hparams: Hparams
    time: float
    kind: str = "exploit"  # EXPLOIT: the source as after its own decision at source_step; AT_BARRIER: before
    source_hparams: Hparams = field(default_factory=dict)  # what explore started from
    # where the store put it (None until stored): ids grow in the order events become visible and are never
    # reused, even when a rollback deletes the newest ones; not part of what the event is, so not compared
    id: int | None = field(default=None, compare=False)


EXPLOIT = "exploit"
EXPLOIT_AT_BARRIER = "exploit-at-barrier"


@dataclass(frozen=True)
class CheckpointRecord:
    """Where a member's saved state lives and the checksum its bytes must match."""

    member: int
    seq: int
    step: int
    key: str
    checksum: str
    hparams: Hparams
    last_ready: int
    pending: bool
    created: float
    pinned_until: float = 0.0


@dataclass
class Progress:
    """A one-look summary of an experiment, for the CLI and the progress display."""

    steps_done: int
    steps_total: int
    members: int
    active: int
    done: int
    failed: int
    exploits: int
    best_member: int | None
    best_score: float | None


def clean_score(score: float | None) -> float | None:
    """Scores are stored as finite floats or None (NaN and infinities rank worst)."""
    if score is None:
        return None
    score = float(score)
    return score if math.isfinite(score) else None


class LeaseLost(Exception):
    """The member is no longer held by this worker (its lease expired and another took it)."""


class Store(ABC):
    """The single source of truth of a PBT run: experiments, members, scores, lineage.

    Every write that changes a member's training state names the worker that holds it and
    raises LeaseLost, changing nothing, if another worker holds it now. Leases (a member's, a
    run's hold) are measured on the store's own clock (`clock`), never on the caller's: the `now`
    the lease methods take is not used to decide them, so a client whose clock is off can
    neither take a live lease nor keep one past its end.
    """

    url: str

    # experiments
    @abstractmethod
    def create_experiment(self, name: str, spec: dict[str, Any], members: list[MemberRecord]) -> None:
        """Store a new experiment's spec and its initial members; StorageError if it exists."""

    @abstractmethod
    def get_spec(self, name: str) -> dict[str, Any]:
        """The experiment's full spec; StorageError naming the experiments that exist if missing."""

    @abstractmethod
    def experiments(self) -> list[str]:
        """Names of the experiments in this store."""

    # members and leases
    def clock(self) -> float:
        """The store's time now (seconds since the epoch), on which every lease starts and ends."""
        return time.time()

    @abstractmethod
    def members(self, name: str) -> list[MemberRecord]:
        """Every member of the experiment, by id."""

    @abstractmethod
    def member(self, name: str, member: int) -> MemberRecord:
        """One member's row."""

    @abstractmethod
    def claim(self, name: str, worker: str, lease: float, now: float, barrier: bool,
              take_new: bool = True) -> MemberRecord | None:
        """The most due member for `worker` (lowest step; its own first), leased to it; or None.

        Without `take_new` only members the worker already holds are considered. With `barrier`
        (synchronous mode) a member pending a decision is due only once every active member has
        reached its step.
        """

    @abstractmethod
    def claim_all(self, name: str, worker: str, lease: float, now: float) -> list[MemberRecord]:
        """Lease every active member no other live worker holds (a batched engine needs them all)."""

    @abstractmethod
    def renew(self, name: str, worker: str, lease: float, now: float) -> None:
        """Extend the leases of every member `worker` holds."""

    @abstractmethod
    def release(self, name: str, member: int, worker: str) -> None:
        """Give a member back so any worker may claim it."""

    @abstractmethod
    def expire_worker(self, name: str, worker: str) -> int:
        """End the leases of a worker known to be dead; returns how many it held."""

    @abstractmethod
    def release_all(self, name: str) -> None:
        """End every lease (resuming a run whose workers are known to be dead)."""

    # the one run that drives an experiment (atomic with the check that no other run does)
    @abstractmethod
    def hold_run(self, name: str, runner: str, lease: float, now: float, force: bool = False) -> str | None:
        """Mark `runner` as the run driving `name` until now + lease, or renew its hold.

        Returns None when it holds it, else the id of the live run that does (`force` takes it anyway).
        """

    @abstractmethod
    def release_run(self, name: str, runner: str) -> None:
        """End `runner`'s hold on `name` (a no-op if another run holds it now)."""

    # training state (each raises LeaseLost unless `worker` holds the member)
    @abstractmethod
    def report(self, name: str, member: int, worker: str, step: int, score: float | None,
               metrics: dict[str, Any], hparams: Hparams, now: float) -> None:
        """Record an evaluation of the interval trained with `hparams`, and advance the member to `step`.

        The same call again (same member, step and `now`: a retry after its commit's answer was lost) changes nothing.
        """

    @abstractmethod
    def report_many(self, name: str, worker: str, step: int, rows: list[tuple[int, float | None, dict[str, Any], Hparams]],
                    now: float) -> None:
        """Record one step of several members, (member, score, metrics, hparams) each, in one transaction."""

    @abstractmethod
    def record_exploit(self, name: str, event: Event, worker: str) -> None:
        """Record an exploit/explore event and give the member its new hyperparameters (once, if repeated)."""

    def record_exploits(self, name: str, events: list[Event], worker: str) -> None:
        """Record several exploit events at once (a batched engine's whole generation)."""
        for event in events:
            self.record_exploit(name, event, worker)

    @abstractmethod
    def mark_ready(self, name: str, member: int, worker: str, step: int) -> None:
        """Record a decision to continue at ready point `step` (no new checkpoint is needed)."""

    @abstractmethod
    def add_checkpoint(self, name: str, ckpt: CheckpointRecord, version: int, keep: int, now: float,
                       worker: str) -> list[str]:
        """Record a written checkpoint and forget all but the newest `keep` unpinned ones.

        The checkpoint becomes current if the member is still at `version`; the member takes the
        checkpoint's ready markers (last_ready, pending). Returns the keys whose files to delete.
        A key already recorded (the same call again) is not recorded twice.
        """

    def add_checkpoints(self, name: str, records: list[tuple[CheckpointRecord, int]], keep: int, now: float,
                        worker: str) -> list[str]:
        """`add_checkpoint` for several members (record, version) at once: a batched engine's checkpoint."""
        return [key for ckpt, version in records for key in self.add_checkpoint(name, ckpt, version, keep, now, worker)]

    @abstractmethod
    def finish(self, name: str, member: int, worker: str) -> None:
        """Mark the member done (its budget reached) and release it; a member already done stays done."""

    @abstractmethod
    def record_failure(self, name: str, member: int, worker: str, error: str, max_failures: int) -> str:
        """Count a failure of the member's trainable and release it; returns its status."""

    @abstractmethod
    def rollback(self, name: str, member: int, worker: str, ckpt: CheckpointRecord | None) -> MemberRecord:
        """Return a member to its checkpoint (or to step 0), dropping reports and events after it."""

    # scores and lineage
    @abstractmethod
    def scores(self, name: str, at_step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids (ascending) and latest scores (NaN if none) of the members not failed that reported (at `at_step` if given).

        The exploit decision reads this: one row per member, never the history.
        """

    @abstractmethod
    def recent_scores(self, name: str, window: int, at_step: int | None = None,
                      members: Sequence[int] | None = None) -> dict[int, list[float | None]]:
        """Each active or done member's last `window` scores (oldest first), up to `at_step`; only `members` if given."""

    def recent_reports(self, name: str, window: int, at_step: int | None = None) -> list[Report]:
        """Each active or done member's last `window` reports up to `at_step`, by member then step.

        What a strategy reading "history" or "metrics" is given: bounded by the population times
        `window` whatever the length of the run. This default reads every report; the stores
        shipped with poptrain override it with one bounded query.
        """
        live = {m.id: m.step for m in self.members(name) if m.status != FAILED and m.step > 0}
        out = []
        for r in self.reports(name):
            if r.member in live:
                newest = live[r.member] if at_step is None else at_step
                if newest - window < r.step <= newest:
                    out.append(r)
        return sorted(out, key=lambda r: (r.member, r.step))

    @abstractmethod
    def reports(self, name: str, members: Collection[int] | None = None, every: int | None = None) -> list[Report]:
        """Every report of the experiment, by member then step: only those of `members` if given, and with
        `every`, only each member's steps that are multiples of it, its first step and its newest (a thinned read
        for figures of a long run)."""

    def reports_after(self, name: str, steps: Mapping[int, int]) -> list[Report]:
        """Each member's reports with a step above `steps[member]` (all of a member not in `steps`), by member then step.

        What a reader that polls asks for: pass each member's last step it holds, get only what is
        new. This default reads every report; the SQL store reads from the lowest of `steps` up.
        """
        return [r for r in self.reports(name) if r.step > steps.get(r.member, 0)]

    @abstractmethod
    def events(self, name: str, after: int | None = None) -> list[Event]:
        """The experiment's exploit events in id order, each with its id; only those with an id above `after` if given.

        A reader that passes the last id it was given misses no event recorded since, even if a
        rollback deleted events in between: a new event's id is above every id a read returned.
        """

    @abstractmethod
    def progress(self, name: str, mode: str) -> Progress:
        """A summary of where the experiment stands."""

    # checkpoints
    @abstractmethod
    def checkpoints(self, name: str, member: int) -> list[CheckpointRecord]:
        """The member's checkpoints, newest first."""

    @abstractmethod
    def pin_checkpoint(self, name: str, member: int, until: float, at_step: int | None = None,
                       skip: tuple[int, ...] = (), pending: bool | None = None) -> CheckpointRecord | None:
        """Protect the member's newest checkpoint (at or before `at_step`; only pending or
        non-pending ones if `pending` is given) from deletion until `until` (the caller's clock).

        The pin lasts as long as `until` is away on the caller's clock, measured on the store's;
        the record returned carries its end in `pinned_until`, which `unpin_checkpoint` takes.
        """

    @abstractmethod
    def unpin_checkpoint(self, name: str, member: int, seq: int, until: float) -> None:
        """End the pin whose `pinned_until` `pin_checkpoint` returned, unless another reader has extended it."""

    @abstractmethod
    def delete_checkpoint(self, name: str, member: int, seq: int, now: float) -> bool:
        """Forget a checkpoint record unless pinned past `now` (or the store's clock, if earlier); True if it was
        forgotten (delete its file)."""

    def close(self) -> None:
        """Release connections."""


def summarize(rows: list[Any], exploits: int, steps: int, mode: str) -> Progress:
    """Summarise member rows (with id, step, status, last_score) into a Progress."""
    counts = {"active": 0, "done": 0, "failed": 0}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    top = best_members(rows, mode)[:1]
    return Progress(steps_done=sum(row.step for row in rows), steps_total=len(rows) * steps, members=len(rows),
                    active=counts["active"], done=counts["done"], failed=counts["failed"], exploits=exploits,
                    best_member=top[0].id if top else None, best_score=float(top[0].last_score) if top else None)
