"""Keeping leases alive: a thread that renews a holder's leases while it works."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .store import Store

log = logging.getLogger("poptrain")


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
