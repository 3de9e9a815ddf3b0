"""What the framework-callback tests check of a finished population and of what each process logged it held."""

from __future__ import annotations

import signal
import socket
import time
from typing import Any, Mapping

import pytest


def check_copies(store: Any, name: str, population: int, steps: int, entries: list[dict[str, Any]],
                 hparams: Mapping[str, str]) -> None:
    """Every interval was reported once; exploits happened; each copy held the source's weights and the new hyperparameters.

    `entries` are the processes' logs: "ready" (a member's weights at a ready point) and "exploit"
    (its weights right after the copy, and what `hparams` maps each explored name to in the log).
    """
    assert sorted((r.member, r.step) for r in store.reports(name)) == [(m, s) for m in range(population)
                                                                     for s in range(1, steps + 1)]
    at_ready = {(e["member"], e["step"]): e["weights"] for e in entries}  # after a copy, its checkpoint holds the copy
    copies = [e for e in entries if e["kind"] == "exploit"]
    events = {(e.member, e.step): e for e in store.events(name)}
    assert copies and len(events) >= len(copies)
    compared = 0
    for copy in copies:
        event = events[(copy["member"], copy["step"])]
        assert event.source == copy["source"]
        if (event.source, event.source_step) in at_ready:  # the source's weights at the step it was copied
            assert copy["weights"] == at_ready[(event.source, event.source_step)]
            compared += 1
        for hparam, logged in hparams.items():  # the optimiser (and module) hold the explored values
            assert copy[logged] == pytest.approx(event.new_hparams[hparam])
    assert compared > 0


def kill_midway(store: Any, name: str, procs: list[Any], steps: int, timeout: float = 90) -> tuple[int, Any]:
    """SIGKILL a process once the member it trains is past its first ready point and short of its budget.

    Returns that member's id (the others must take it over and finish it) and the killed process.
    (Any process, not a chosen one: on a loaded machine a slow starter may never hold a member.)
    """
    workers = {f"{socket.gethostname()}-{p.pid}": p for p in procs}
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "no process trained a member halfway"
        assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs if p.poll() is not None]
        for m in store.members(name):
            if m.worker in workers and m.status == "active" and 2 <= m.step <= steps - 2:
                workers[m.worker].send_signal(signal.SIGKILL)
                return m.id, workers[m.worker]
        time.sleep(0.02)
