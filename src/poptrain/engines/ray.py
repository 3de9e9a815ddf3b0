"""The Ray engine: the shared worker loop as Ray actors, on a local Ray or an existing cluster.

Ray places the workers (`num_cpus`, `num_gpus` each); the population lives in the store the
experiment names, so that store must be one every Ray node reaches (PostgreSQL, or SQLite on a
single machine), and checkpoints a folder or bucket every node reaches.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..errors import PoptrainError, SpecError
from ..population import ACTIVE
from ..store import Store, open_store
from .progress import ProgressDisplay


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


class RayWorker:
    """One worker loop inside a Ray actor."""

    def __init__(self, url: str, name: str, worker_id: str, trainable: Any, max_held: int | None) -> None:
        from .worker import Worker

        self.worker = Worker(open_store(url, create=False, wait=True), name, worker_id, trainable=trainable, max_held=max_held)

    def run(self) -> bool:
        self.worker.run()
        return True


def run_ray(store: Store, name: str, workers: int | None = None, trainable: Any = None, progress: bool = False,
            address: str | None = None, num_cpus: float = 1, num_gpus: float = 0) -> None:
    """Run `workers` Ray actors (default: as many as the cluster's CPUs allow) until the run is done."""
    try:
        import ray
    except ImportError:
        raise PoptrainError("the ray engine needs Ray: pip install 'poptrain[ray]'") from None
    if store.url.startswith("memory://"):
        raise PoptrainError("the ray engine needs a store its workers share: a sqlite:/// or postgresql:// URL")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    spec = store.get_spec(name)
    cluster = ray.cluster_resources()
    if started_here and address is None:  # a local Ray never grows: a worker asking for more would wait forever
        for key, wanted in (("CPU", num_cpus), ("GPU", num_gpus)):
            if wanted > cluster.get(key, 0):
                ray.shutdown()
                raise PoptrainError(f"each Ray worker asks for {wanted:g} {key}(s) but this machine's Ray has "
                                    f"{cluster.get(key, 0):g}: lower --{key.lower()}s-per-worker, or pass --address "
                                    f"of a cluster that has them")
    if workers is None:  # as many as the scarcest resource a worker asks for allows, at most one per member
        fits = [cluster.get(key, 0) // wanted for key, wanted in (("CPU", num_cpus), ("GPU", num_gpus)) if wanted > 0]
        workers = max(1, min(int(min(fits)), int(spec["population"])))
    share = -(-int(spec["population"]) // workers)
    # a class defined in the driver's script travels by value; any other is imported from the spec's paths
    shipped = trainable if trainable is not None and trainable.__module__ == "__main__" else None
    actor = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(RayWorker)
    started = 0
    running: dict[Any, tuple[str, Any]] = {}

    def start() -> None:
        nonlocal started
        worker_id = f"ray-{os.getpid()}-{started}"
        started += 1
        handle = actor.remote(store.url, name, worker_id, shipped, share)
        running[handle.run.remote()] = (worker_id, handle)

    for _ in range(workers):
        start()
    restarts = 0
    try:
        with ProgressDisplay(store, name, spec["mode"], enabled=progress) as display:
            while running:
                done, _ = ray.wait(list(running), timeout=0.25)
                display.update()
                for ref in done:
                    worker_id, _handle = running.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayActorError:  # the actor's process died: free its members, replace it
                        store.expire_worker(name, worker_id)
                        if any(m.status == ACTIVE for m in store.members(name)):
                            restarts += 1
                            if restarts > 3 * workers:
                                raise PoptrainError(f"Ray workers died {restarts} times; `poptrain resume` later")
                            start()
    finally:
        for _, handle in running.values():
            ray.kill(handle)
        if started_here:
            ray.shutdown()
