"""Engines execute: they move members through train → evaluate → report → maybe exploit."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import SpecError
from ..store import Store

ENGINES = ("local", "serial", "vectorized", "ray")


def run_engine(engine: str, store: Store, name: str, workers: int | None = None, trainable: Any = None,
               progress: bool = False, device: str = "cpu", address: str | None = None, compile: bool = False,
               resources: Mapping[str, float] | None = None) -> None:
    """Run an experiment stored in `store` on the named engine until it is done.

    `compile` is the vectorized engine's; `address` and `resources` (per worker: {"cpu": 2, "gpu": 0.5})
    are the Ray engine's.
    """
    if engine in ("serial", "local", "ray") and trained_batched(store, name):
        raise SpecError(f"experiment {name!r} was trained by the vectorized engine (its checkpoints hold whole "
                        f"populations): continue it with engine 'vectorized'")
    if engine == "serial":
        from .serial import run_serial

        run_serial(store, name, trainable=trainable, progress=progress)
    elif engine == "local":
        from .local import run_local

        run_local(store, name, workers=workers, trainable=trainable, progress=progress)
    elif engine == "ray":
        from .ray import run_ray, worker_resources

        per_worker = worker_resources(resources, device)
        run_ray(store, name, workers=workers, trainable=trainable, progress=progress, address=address,
                num_cpus=per_worker["cpu"], num_gpus=per_worker["gpu"])
    elif engine == "vectorized":
        from .vectorized import run_vectorized

        run_vectorized(store, name, trainable=trainable, progress=progress, device=device, compile=compile)
    else:
        raise SpecError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")


def trained_batched(store: Store, name: str) -> bool:
    """Whether the experiment's checkpoints are population files (the vectorized engine wrote them)."""
    return any("#member=" in c.key for m in store.members(name) for c in store.checkpoints(name, m.id)[:1])


def check_engine(engine: str | None) -> None:
    """Refuse an unknown engine name before anything is stored."""
    if engine is not None and engine not in ENGINES:
        raise SpecError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")


def join(storage: str, name: str, worker_id: str | None = None) -> None:
    """Join a running experiment as one more worker (as `poptrain worker` does on any host)."""
    import os
    import socket

    from ..store import open_store
    from .worker import Worker

    Worker(open_store(storage, create=False, wait=True), name, worker_id or f"{socket.gethostname()}-{os.getpid()}").run()
