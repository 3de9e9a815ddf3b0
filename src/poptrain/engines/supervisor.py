"""Keeping workers alive: one lease heartbeat, and one restart-and-charge loop for engines with workers.

The local and Ray engines differ only in how a worker starts and how its end is seen; what a
death means (charge the member it was training, free its leases, replace it, give up after
too many deaths outside any member's code) is decided here, once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from ..errors import PoptrainError
from ..population import ACTIVE, FAILED
from ..store import LeaseLost, Store
from .progress import ProgressDisplay

log = logging.getLogger("poptrain")

STOPPED_ON_ERROR = 3  # a worker's exit code when it stopped on an error it printed and no restart would mend


class Heartbeat:
    """Renews a lease every lease/3 seconds on a thread; a failed renewal is logged and retried.

    By default the leases of worker `holder` on its members; `renew` replaces what is renewed
    (the runner renews its hold on the run).
    """

    def __init__(self, store: Store, name: str, holder: str, lease: float,
                 renew: Callable[[float], None] | None = None) -> None:
        self.store, self.name, self.holder, self.lease = store, name, holder, lease
        self.renew = renew or (lambda now: store.renew(name, holder, lease, now))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"poptrain-heartbeat-{holder}")

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._thread.join()

    def stop(self) -> None:
        """Stop renewing (the thread ends at its next wake-up)."""
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.renew(time.time())
            except Exception as exc:  # a missed beat is retried; the lease is long enough for several
                log.warning("%s could not renew its lease: %s", self.holder, exc)


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

    def stop(self) -> None:
        """End every worker."""


def supervise(store: Store, name: str, pool: Pool, workers: int, progress: bool, max_restarts: int | None = None,
              what: str = "worker processes") -> None:
    """Start `workers` workers and keep the run going until every member is done or failed.

    A worker that dies inside a member's code (a crash in native code, out of memory, a time
    limit) costs that member one failure; its leases end at once so another worker resumes its
    members from their checkpoints; it is replaced while members are left. More than
    `max_restarts` deaths outside any member's code (default 3 per worker) end the run.
    """
    spec = store.get_spec(name)
    max_failures = int(spec["max_failures"])
    max_restarts = 3 * workers if max_restarts is None else max_restarts
    restarts = 0
    started = [pool.start() for _ in range(workers)]
    try:
        with ProgressDisplay(store, name, spec["mode"], enabled=progress) as display:
            while pool.running():
                ended = pool.exited(0.1)
                display.update()
                for end in ended:
                    if end.code == 0:
                        continue
                    if end.code == STOPPED_ON_ERROR:
                        raise PoptrainError(f"a worker stopped on an error that restarting it would not mend (printed "
                                            f"above); fix it, then `poptrain resume`")
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
