"""The population store in a Python dict: the same behaviour as SQL, for tests and notebooks."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Collection, Sequence

import numpy as np

from ..errors import StorageError
from ..redact import shown
from ..records import ACTIVE, DONE, FAILED
from .base import CheckpointRecord, Event, LeaseLost, MemberRecord, Progress, Report, Store, clean_score, summarize


def _json(value: Any) -> Any:
    """The value as the SQL store gives it back: through JSON (tuples become lists, a fresh copy)."""
    return json.loads(json.dumps(value))


class _Experiment:
    def __init__(self, spec: dict[str, Any], members: list[MemberRecord]) -> None:
        self.spec = _json(spec)
        self.members = {m.id: replace(m, hparams=_json(m.hparams), initial_hparams=_json(m.initial_hparams), step=0,
                                      version=0, ckpt_version=0, status=ACTIVE, worker=None) for m in members}
        self.reports: dict[tuple[int, int], Report] = {}
        self.events: list[Event] = []
        self.recorded: set[tuple[int, int, float]] = set()  # (member, step, time) of each event, for idempotency
        self.last_event_id = 0  # the highest event id ever given: a rollback's deletions never lower it
        self.checkpoints: dict[int, list[CheckpointRecord]] = {m.id: [] for m in members}
        self.run_hold: tuple[str | None, float] = (None, 0.0)  # the run driving it, and until when


class MemoryStore(Store):
    """A store that lives in this process only; one per `memory://NAME` URL."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._experiments: dict[str, _Experiment] = {}
        self._lock = threading.RLock()

    def _get(self, name: str) -> _Experiment:
        if name not in self._experiments:
            known = ", ".join(self._experiments) or "no experiments"
            raise StorageError(f"no experiment {name!r} in {shown(self.url)} (it holds: {known})")
        return self._experiments[name]

    def _set(self, name: str, member: int, **changes: Any) -> MemberRecord:
        exp = self._get(name)
        exp.members[member] = replace(exp.members[member], **changes)
        return exp.members[member]

    def create_experiment(self, name: str, spec: dict[str, Any], members: list[MemberRecord]) -> None:
        with self._lock:
            if name in self._experiments:
                raise StorageError(f"experiment {name!r} already exists in {shown(self.url)}")
            self._experiments[name] = _Experiment(spec, members)

    def get_spec(self, name: str) -> dict[str, Any]:
        with self._lock:
            return _json(self._get(name).spec)

    def experiments(self) -> list[str]:
        with self._lock:
            return list(self._experiments)

    def members(self, name: str) -> list[MemberRecord]:
        with self._lock:
            return [self._get(name).members[k] for k in sorted(self._get(name).members)]

    def member(self, name: str, member: int) -> MemberRecord:
        with self._lock:
            return self._get(name).members[member]

    def claim(self, name: str, worker: str, lease: float, now: float, barrier: bool,
              take_new: bool = True) -> MemberRecord | None:
        with self._lock:
            now = self.clock()
            active = [m for m in self._get(name).members.values() if m.status == ACTIVE]
            lowest = min((m.step for m in active), default=0)
            due = [m for m in active
                   if (m.worker is None or m.worker == worker or m.lease_until < now)
                   and (take_new or m.worker == worker)
                   and not (barrier and m.pending and m.step > lowest)]
            if not due:
                return None
            pick = min(due, key=lambda m: (m.step, 0 if m.worker == worker else 1, m.id))
            if pick.worker == worker and pick.lease_until >= now:
                return pick  # already ours: the heartbeat keeps the lease
            return self._set(name, pick.id, worker=worker, lease_until=now + lease)

    def claim_all(self, name: str, worker: str, lease: float, now: float) -> list[MemberRecord]:
        with self._lock:
            held, now = [], self.clock()
            for m in list(self._get(name).members.values()):
                if m.status == ACTIVE and (m.worker is None or m.worker == worker or m.lease_until < now):
                    held.append(self._set(name, m.id, worker=worker, lease_until=now + lease))
            return sorted(held, key=lambda m: m.id)

    def renew(self, name: str, worker: str, lease: float, now: float) -> None:
        with self._lock:
            for m in list(self._get(name).members.values()):
                if m.worker == worker:
                    self._set(name, m.id, lease_until=self.clock() + lease)

    def release(self, name: str, member: int, worker: str) -> None:
        with self._lock:
            if self._get(name).members[member].worker == worker:
                self._set(name, member, worker=None, lease_until=0.0)

    def expire_worker(self, name: str, worker: str) -> int:
        with self._lock:
            held = [m.id for m in self._get(name).members.values() if m.worker == worker]
            for member in held:
                self._set(name, member, lease_until=0.0)
            return len(held)

    def hold_run(self, name: str, runner: str, lease: float, now: float, force: bool = False) -> str | None:
        with self._lock:
            exp, now = self._get(name), self.clock()
            holder, until = exp.run_hold
            if holder not in (None, runner) and until >= now and not force:
                return holder
            exp.run_hold = (runner, now + lease)
            return None

    def release_run(self, name: str, runner: str) -> None:
        with self._lock:
            exp = self._get(name)
            if exp.run_hold[0] == runner:
                exp.run_hold = (None, 0.0)

    def release_all(self, name: str) -> None:
        with self._lock:
            for member in list(self._get(name).members):
                self._set(name, member, worker=None, lease_until=0.0)

    def _held(self, name: str, member: int, worker: str) -> MemberRecord:
        m = self._get(name).members[member]
        if m.worker != worker:
            raise LeaseLost(f"member {member} is no longer held by worker {worker}")
        return m

    def report(self, name: str, member: int, worker: str, step: int, score: float | None,
               metrics: dict[str, Any], hparams: dict[str, Any], now: float) -> None:
        with self._lock:
            self._held(name, member, worker)
            if getattr(self._get(name).reports.get((member, step)), "time", None) != now:  # else this very report again
                self._report(name, member, step, score, metrics, hparams, now)

    def _report(self, name: str, member: int, step: int, score: float | None, metrics: dict[str, Any],
                hparams: dict[str, Any], now: float) -> None:
        score = clean_score(score)
        self._get(name).reports[(member, step)] = Report(member, step, score, _json(metrics), _json(hparams), now)
        self._set(name, member, step=step, last_score=score, hparams=_json(hparams),
                  version=self._get(name).members[member].version + 1)

    def report_many(self, name: str, worker: str, step: int, rows: list[tuple[int, float | None, dict[str, Any], Any]],
                    now: float) -> None:
        with self._lock:
            for member, _, _, _ in rows:  # all or nothing, as in one transaction
                self._held(name, member, worker)
            if all(getattr(self._get(name).reports.get((member, step)), "time", None) == now for member, *_ in rows):
                return  # these very reports again
            for member, score, metrics, hparams in rows:
                self._report(name, member, step, score, metrics, hparams, now)

    def record_exploits(self, name: str, events: list[Event], worker: str) -> None:
        with self._lock:
            for event in events:
                self._held(name, event.member, worker)
            for event in events:
                self.record_exploit(name, event, worker)

    def record_exploit(self, name: str, event: Event, worker: str) -> None:
        with self._lock:
            m = self._held(name, event.member, worker)
            exp = self._get(name)
            if (event.member, event.step, event.time) in exp.recorded:
                return
            exp.recorded.add((event.member, event.step, event.time))
            exp.last_event_id += 1
            event = replace(event, old_hparams=_json(event.old_hparams), new_hparams=_json(event.new_hparams),
                            source_hparams=_json(event.source_hparams), id=exp.last_event_id)
            exp.events.append(event)
            self._set(name, event.member, hparams=event.new_hparams, version=m.version + 1)

    def mark_ready(self, name: str, member: int, worker: str, step: int) -> None:
        with self._lock:
            self._held(name, member, worker)
            self._set(name, member, last_ready=step, pending=False)

    def finish(self, name: str, member: int, worker: str) -> None:
        with self._lock:
            if self._get(name).members[member].status == DONE:
                return
            self._held(name, member, worker)
            self._set(name, member, status=DONE, worker=None, lease_until=0.0)

    def record_failure(self, name: str, member: int, worker: str, error: str, max_failures: int) -> str:
        with self._lock:
            m = self._held(name, member, worker)
            status = FAILED if m.failures + 1 > max_failures else ACTIVE
            self._set(name, member, failures=m.failures + 1, error=error, status=status, worker=None,
                      lease_until=0.0, version=m.version + 1)
            return status

    def rollback(self, name: str, member: int, worker: str, ckpt: CheckpointRecord | None) -> MemberRecord:
        with self._lock:
            exp = self._get(name)
            m = self._held(name, member, worker)
            if ckpt is None:
                step, hparams, last_ready, pending = 0, m.initial_hparams, 0, False
                exp.events = [e for e in exp.events if e.member != member]
            else:
                step, hparams, last_ready, pending = ckpt.step, ckpt.hparams, ckpt.last_ready, ckpt.pending
                # a pending checkpoint precedes the decision at its step; any other follows it
                exp.events = [e for e in exp.events if e.member != member or e.step < step
                              or (e.step == step and not pending)]
            exp.recorded = {(e.member, e.step, e.time) for e in exp.events}
            for key in [k for k in exp.reports if k[0] == member and k[1] > step]:
                del exp.reports[key]
            kept = exp.reports.get((member, step))
            return self._set(name, member, step=step, hparams=dict(hparams), last_ready=last_ready, pending=pending,
                             last_score=kept.score if kept else None, version=m.version + 1,
                             ckpt_version=m.version + 1)

    def scores(self, name: str, at_step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            exp = self._get(name)
            ids, scores = [], []
            for m in sorted(exp.members.values(), key=lambda m: m.id):
                if m.status == FAILED or m.step == 0:
                    continue
                if at_step is None:
                    ids.append(m.id)
                    scores.append(m.last_score)
                elif (m.id, at_step) in exp.reports:
                    ids.append(m.id)
                    scores.append(exp.reports[(m.id, at_step)].score)
            return (np.array(ids, dtype=np.int64),
                    np.array([np.nan if s is None else s for s in scores], dtype=np.float64))

    def recent_scores(self, name: str, window: int, at_step: int | None = None,
                      members: Sequence[int] | None = None) -> dict[int, list[float | None]]:
        with self._lock:
            exp = self._get(name)
            wanted = None if members is None else set(members)
            out: dict[int, list[float | None]] = {}
            for m in exp.members.values():
                if m.status == FAILED or m.step == 0 or (wanted is not None and m.id not in wanted):
                    continue
                newest = m.step if at_step is None else at_step
                scores = [exp.reports[(m.id, s)].score for s in range(max(0, newest - window) + 1, newest + 1)
                          if (m.id, s) in exp.reports]
                if scores:
                    out[m.id] = scores
            return out

    def recent_reports(self, name: str, window: int, at_step: int | None = None) -> list[Report]:
        with self._lock:
            exp = self._get(name)
            out: list[Report] = []
            for m in sorted(exp.members.values(), key=lambda m: m.id):
                if m.status == FAILED or m.step == 0:
                    continue
                newest = m.step if at_step is None else at_step
                out.extend(exp.reports[(m.id, s)] for s in range(max(0, newest - window) + 1, newest + 1)
                           if (m.id, s) in exp.reports)
            return out

    def reports(self, name: str, members: Collection[int] | None = None, every: int | None = None) -> list[Report]:
        with self._lock:
            exp = self._get(name)
            return [r for (member, step), r in sorted(exp.reports.items())
                    if (members is None or member in members)
                    and (not every or every <= 1 or step % every == 0 or step == 1 or step >= exp.members[member].step)]

    def events(self, name: str, after: int | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self._get(name).events if after is None or (e.id or 0) > after]

    def progress(self, name: str, mode: str) -> Progress:
        with self._lock:
            exp = self._get(name)
            rows = [SimpleNamespace(id=m.id, step=m.step, status=m.status, last_score=m.last_score)
                    for m in exp.members.values()]
            return summarize(rows, len(exp.events), int(exp.spec["steps"]), mode)

    def add_checkpoints(self, name: str, records: list[tuple[CheckpointRecord, int]], keep: int, now: float,
                        worker: str) -> list[str]:
        with self._lock:
            for ckpt, _ in records:
                self._held(name, ckpt.member, worker)
            return super().add_checkpoints(name, records, keep, now, worker)

    def add_checkpoint(self, name: str, ckpt: CheckpointRecord, version: int, keep: int, now: float,
                       worker: str) -> list[str]:
        with self._lock:
            exp = self._get(name)
            m = self._held(name, ckpt.member, worker)
            held = exp.checkpoints[ckpt.member]
            if any(c.key == ckpt.key for c in held):
                return []  # this very checkpoint again
            seq = max((c.seq for c in held), default=0) + 1
            held.insert(0, replace(ckpt, seq=seq, hparams=_json(ckpt.hparams)))
            self._set(name, ckpt.member, last_ready=ckpt.last_ready, pending=ckpt.pending,
                      ckpt_version=version if m.version == version else m.ckpt_version)
            old = [c for c in held[keep:] if c.pinned_until < self.clock()]
            exp.checkpoints[ckpt.member] = [c for c in held if c not in old]
            return [c.key for c in old]

    def checkpoints(self, name: str, member: int) -> list[CheckpointRecord]:
        with self._lock:
            return list(self._get(name).checkpoints[member])

    def pin_checkpoint(self, name: str, member: int, until: float, at_step: int | None = None,
                       skip: tuple[int, ...] = (), pending: bool | None = None) -> CheckpointRecord | None:
        with self._lock:
            held = self._get(name).checkpoints[member]
            for i, c in enumerate(held):
                if ((at_step is None or c.step <= at_step) and c.seq not in skip
                        and (pending is None or c.pending == pending)):
                    held[i] = replace(c, pinned_until=max(c.pinned_until, until))
                    return replace(c, pinned_until=until)
            return None

    def unpin_checkpoint(self, name: str, member: int, seq: int, until: float) -> None:
        with self._lock:
            held = self._get(name).checkpoints[member]
            for i, c in enumerate(held):
                if c.seq == seq and c.pinned_until == until:
                    held[i] = replace(c, pinned_until=0.0)

    def delete_checkpoint(self, name: str, member: int, seq: int, now: float) -> bool:
        with self._lock:
            exp = self._get(name)
            kept = [c for c in exp.checkpoints[member] if c.seq != seq or c.pinned_until >= min(now, self.clock())]
            removed = len(kept) < len(exp.checkpoints[member])
            exp.checkpoints[member] = kept
            return removed
