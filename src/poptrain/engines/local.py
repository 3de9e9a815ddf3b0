"""The local engine: N worker processes on this machine sharing one store by URL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from typing import Any

from ..errors import PoptrainError
from ..population import ACTIVE
from ..store import Store, open_store
from .progress import ProgressDisplay


def worker_main(url: str, name: str, worker_id: str, trainable: Any = None, threads: int | None = None,
                max_held: int | None = None) -> None:
    """Entry point of one worker process: join the experiment by URL and work until it is done."""
    from .worker import Worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to handle: it stops the workers
    worker = Worker(open_store(url), name, worker_id, trainable=trainable, max_held=max_held)
    if threads and "torch" in __import__("sys").modules:
        import torch

        torch.set_num_threads(threads)
    worker.run()


def run_local(store: Store, name: str, workers: int | None = None, trainable: Any = None,
              progress: bool = False, max_restarts: int | None = None) -> None:
    """Run `workers` processes (default: CPU count) until every member is done or failed.

    A worker that dies is replaced and its leases end at once, so another worker resumes its
    members from their last checkpoints.
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

    def start() -> tuple[str, Any]:
        worker_id = f"local-{os.getpid()}-{len(started)}"
        started.append(worker_id)
        proc = ctx.Process(target=worker_main, args=(store.url, name, worker_id, trainable, threads, share),
                           daemon=True)
        proc.start()
        return worker_id, proc

    running = dict(start() for _ in range(workers))
    restarts = 0
    mode = spec["mode"]
    try:
        with ProgressDisplay(store, name, mode, enabled=progress) as display:
            while running:
                time.sleep(0.1)
                display.update()
                for worker_id, proc in list(running.items()):
                    if proc.is_alive():
                        continue
                    del running[worker_id]
                    if proc.exitcode == 0:
                        continue
                    store.expire_worker(name, worker_id)
                    if any(m.status == ACTIVE for m in store.members(name)):
                        if restarts >= max_restarts:
                            raise PoptrainError(
                                f"workers died {restarts + 1} times (last exit code {proc.exitcode}); "
                                f"see the log above, then `poptrain resume`")
                        restarts += 1
                        new_id, new_proc = start()
                        running[new_id] = new_proc
    finally:
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            proc.join(5)
        for worker_id in started:  # they are gone: a resume may take their members at once
            store.expire_worker(name, worker_id)
