"""Keeping workers alive: one restart-and-charge loop for engines with workers.

The local and Ray engines differ only in how a worker starts, how its end is seen and how it is
ended; what a death means (charge the member it was training, free its leases, replace it, give
up after too many deaths outside any member's code) and when an interval has run too long
(`interval_timeout`) are decided here, once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from ..errors import PoptrainError, SpecError
from ..records import ACTIVE, FAILED
from ..store import LeaseLost, Store
from .progress import ProgressDisplay

log = logging.getLogger("poptrain")

STOPPED_ON_ERROR = 3  # a worker's exit code when it stopped on an error it printed and no restart would mend


@dataclass(frozen=True)
class Exit:
    """A worker that ended: its id, how (0 is a clean finish), and the member it was inside, if known."""

    worker_id: str
    code: int | None
    member: int | None = None
    reason: str | None = None  # why the engine ended it, when it did (an interval over its time limit)


class Pool(Protocol):
    """What an engine with workers gives the supervisor."""

    def start(self) -> str:
        """Start one worker; its id."""

    def exited(self, timeout: float) -> list[Exit]:
        """Workers that ended since the last call, waiting up to `timeout` seconds for one."""

    def running(self) -> int:
        """How many workers are alive."""

    def intervals(self) -> Mapping[str, tuple[int, float]]:
        """Each worker inside a member's interval: (member, when the interval began)."""

    def end(self, worker_id: str, reason: str) -> None:
        """End one worker at once (again: nothing); its Exit carries `reason` and the member it was inside."""

    def stop(self) -> None:
        """End every worker."""


def check_interval_timeout(engine: str, timeout: Any) -> float | None:
    """An interval time limit: None (no limit) or a positive number of seconds."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout < float("inf")):
        raise SpecError(f"engine {engine}: interval_timeout must be a positive number of seconds, not {timeout!r}")
    return timeout


def overdue(intervals: Mapping[str, tuple[int, float]], timeout: float, now: float) -> list[str]:
    """The workers whose member's interval has run longer than `timeout` seconds."""
    return [w for w, (member, since) in intervals.items() if member >= 0 and now - since > timeout]


class TimeLimit:
    """Ends a worker whose member's interval runs past `timeout`, so that member is charged one failure."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.every = min(1.0, timeout / 4) if timeout else 0.0  # how often the workers' intervals are read
        self.next = 0.0

    def enforce(self, pool: Pool) -> None:
        """Read the workers' intervals (at most every `every` seconds) and end the overdue ones."""
        now = time.time()
        if not self.timeout or now < self.next:
            return
        self.next = now + self.every
        for worker_id in overdue(pool.intervals(), self.timeout, now):  # a pool ends each worker once
            pool.end(worker_id, f"an interval ran past interval_timeout ({self.timeout:g} s); its worker was ended")


def supervise(store: Store, name: str, pool: Pool, workers: int, progress: bool, max_restarts: int | None = None,
              what: str = "worker processes", interval_timeout: float | None = None) -> None:
    """Start `workers` workers and keep the run going until every member is done or failed.

    A worker that dies inside a member's code (a crash in native code, out of memory, a time
    limit) costs that member one failure; its leases end at once so another worker resumes its
    members from their checkpoints; it is replaced while members are left. More than
    `max_restarts` deaths outside any member's code (default 3 per worker) end the run. A worker
    whose interval runs past `interval_timeout` seconds is ended, charging its member.
    """
    spec = store.get_spec(name)
    max_failures = int(spec["max_failures"])
    max_restarts = 3 * workers if max_restarts is None else max_restarts
    restarts = 0
    limit = TimeLimit(interval_timeout)
    started = [pool.start() for _ in range(workers)]
    try:
        with ProgressDisplay(store, name, spec["mode"], enabled=progress) as display:
            while pool.running():
                ended = pool.exited(0.1)
                limit.enforce(pool)
                display.update()
                for end in ended:
                    if end.code == 0:
                        continue
                    if end.code == STOPPED_ON_ERROR:
                        raise PoptrainError("a worker stopped on an error that restarting it would not mend (printed "
                                            "above); fix it, then `poptrain resume`")
                    if end.member is not None and end.member >= 0:  # that member takes the blame
                        charge(store, name, end, max_failures)
                    else:
                        restarts += 1
                    store.expire_worker(name, end.worker_id)
                    if any(m.status == ACTIVE for m in store.members(name)):
                        if restarts > max_restarts:
                            raise PoptrainError(
                                f"{what} died {restarts} times outside any member's code (last exit "
                                f"{describe(end.code)}); see the log above, then `poptrain resume`")
                        started.append(pool.start())
    finally:
        pool.stop()
        for worker_id in started:  # they are gone: a resume may take their members at once
            store.expire_worker(name, worker_id)


def describe(code: int | None) -> str:
    """A worker's exit status in words."""
    return f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"


def charge(store: Store, name: str, end: Exit, max_failures: int) -> None:
    """Count a worker's death against the member it was training (a crash, out of memory, a time limit)."""
    how = end.reason or f"its worker process died ({describe(end.code)})"
    assert end.member is not None
    try:
        status = store.record_failure(name, end.member, end.worker_id, how, max_failures)
    except LeaseLost:
        return
    log.warning("member %d: %s%s", end.member, how,
                "; marked failed" if status == FAILED else "; retrying from its last checkpoint")
