"""The local engine: N worker processes on this machine sharing one store by URL."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from typing import Any

from ..errors import PoptrainError
from ..population import ACTIVE, FAILED
from ..store import LeaseLost, Store, open_store
from .progress import ProgressDisplay

log = logging.getLogger("poptrain")


def worker_main(url: str, name: str, worker_id: str, trainable: Any = None, threads: int | None = None,
                max_held: int | None = None, current: Any = None) -> None:
    """Entry point of one worker process: join the experiment by URL and work until it is done.

    `current` (a shared integer) shows the engine which member the worker is busy with, so that a
    crash of the whole process is charged to that member.
    """
    from .worker import Worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to handle: it stops the workers
    worker = Worker(open_store(url, wait=True), name, worker_id, trainable=trainable, max_held=max_held, current=current)
    if threads and "torch" in __import__("sys").modules:
        import torch

        torch.set_num_threads(threads)
    worker.run()


def run_local(store: Store, name: str, workers: int | None = None, trainable: Any = None,
              progress: bool = False, max_restarts: int | None = None) -> None:
    """Run `workers` processes (default: CPU count) until every member is done or failed.

    A worker that dies is replaced and its leases end at once, so another worker resumes its
    members from their last checkpoints; if it died inside a member's code (a crash in native
    code, out of memory), that counts as one failure of that member.
    """
    if store.url.startswith("memory://"):
        raise PoptrainError("the local engine needs a store that processes share: use a sqlite:/// URL, "
                            "or engine='serial' for a memory:// store")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise PoptrainError(f"workers must be at least 1, not {workers}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    max_restarts = 3 * workers if max_restarts is None else max_restarts
    spec = store.get_spec(name)
    share = -(-int(spec["population"]) // workers)  # each worker keeps about its share of the population
    ctx = mp.get_context("spawn")
    started: list[str] = []
    max_failures = int(spec["max_failures"])

    def start() -> tuple[str, tuple[Any, Any]]:
        worker_id = f"local-{os.getpid()}-{len(started)}"
        started.append(worker_id)
        current = ctx.Value("i", -1, lock=False)
        proc = ctx.Process(target=worker_main, daemon=True,
                           args=(store.url, name, worker_id, trainable, threads, share, current))
        proc.start()
        return worker_id, (proc, current)

    running = dict(start() for _ in range(workers))
    restarts = 0
    try:
        with ProgressDisplay(store, name, spec["mode"], enabled=progress) as display:
            while running:
                time.sleep(0.1)
                display.update()
                for worker_id, (proc, current) in list(running.items()):
                    if proc.is_alive():
                        continue
                    del running[worker_id]
                    if proc.exitcode == 0:
                        continue
                    if current.value >= 0:  # it died inside a member's code: that member takes the blame
                        charge(store, name, current.value, worker_id, proc.exitcode, max_failures)
                    else:
                        restarts += 1
                    store.expire_worker(name, worker_id)
                    if any(m.status == ACTIVE for m in store.members(name)):
                        if restarts > max_restarts:
                            raise PoptrainError(
                                f"worker processes died {restarts} times outside any member's code (last exit "
                                f"code {proc.exitcode}); see the log above, then `poptrain resume`")
                        new_id, new_proc = start()
                        running[new_id] = new_proc
    finally:
        for proc, _ in running.values():
            proc.terminate()
        for proc, _ in running.values():
            proc.join(5)
        for worker_id in started:  # they are gone: a resume may take their members at once
            store.expire_worker(name, worker_id)


def charge(store: Store, name: str, member: int, worker_id: str, exitcode: int | None, max_failures: int) -> None:
    """Count a worker process's death against the member it was training (a crash, or out of memory)."""
    how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
    try:
        status = store.record_failure(name, member, worker_id, f"its worker process died ({how})", max_failures)
    except LeaseLost:
        return
    log.warning("member %d: its worker process died (%s)%s", member, how,
                "; marked failed" if status == FAILED else "; retrying from its last checkpoint")
