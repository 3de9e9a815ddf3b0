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
    per_worker = worker_resources(resources, device)
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
        from .ray import run_ray

        run_ray(store, name, workers=workers, trainable=trainable, progress=progress, address=address,
                num_cpus=per_worker["cpu"], num_gpus=per_worker["gpu"])
    elif engine == "vectorized":
        from .vectorized import run_vectorized

        run_vectorized(store, name, trainable=trainable, progress=progress, device=device, compile=compile)
    else:
        raise SpecError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")


def worker_resources(resources: Mapping[str, float] | None, device: str = "cpu") -> dict[str, float]:
    """What each worker asks the cluster for: one CPU, and one GPU when the device is CUDA, unless told otherwise."""
    out = {"cpu": 1.0, "gpu": 1.0 if device.startswith("cuda") else 0.0}
    for key, value in (resources or {}).items():
        if key not in out:
            raise SpecError(f"resources: unknown resource {key!r} (known: cpu, gpu)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise SpecError(f"resources: {key} must be a number >= 0, got {value!r}")
        out[key] = float(value)
    if out["cpu"] == 0 and out["gpu"] == 0:
        raise SpecError("resources: a worker needs some cpu or gpu")
    return out


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
