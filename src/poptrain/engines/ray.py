"""The Ray engine: the shared worker loop as Ray actors, on a local Ray or an existing cluster.

Ray places the workers (`num_cpus`, `num_gpus` each); the population lives in the store the
experiment names, so that store must be one every Ray node reaches (PostgreSQL, or SQLite on a
single machine), and checkpoints a folder or bucket every node reaches.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from ..errors import PoptrainError, SpecError
from ..spec import ExperimentSpec
from ..store import Store, open_store
from .base import Engine, check_not_batched, check_workers
from .ranks import check_ranks, join_group
from .supervisor import Exit, check_interval_timeout, supervise

log = logging.getLogger("poptrain")


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


class Inside:
    """Which member a worker is training (-1: none) and since when (this process's monotonic clock)."""

    def __init__(self) -> None:
        self.member, self.since = -1, time.monotonic()

    @property
    def value(self) -> int:
        return self.member

    @value.setter
    def value(self, member: int) -> None:
        self.member, self.since = member, time.monotonic()


class RayWorker:
    """One worker loop inside a Ray actor (threaded: `interval` answers while `run` works).

    With `ranks` above 1 the actor is rank `rank` of a member's process group: `run` joins the
    group at rank 0's `rendezvous` address first, and only rank 0 opens the store.
    """

    def __init__(self, url: str, name: str, worker_id: str, trainable: Any, max_held: int | None,
                 rank: int = 0, ranks: int = 1) -> None:
        self.inside = Inside()
        self.args = (url, name, worker_id, trainable, max_held)
        self.rank, self.ranks = rank, ranks

    def rendezvous(self) -> str:
        """Rank 0's address for its group to meet at (this node's IP, a free port)."""
        import socket

        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return f"tcp://{ray.util.get_node_ip_address()}:{port}"

    def run(self, address: str | None = None) -> int | None:
        """Work until the population is done (None); in a group, the member it was inside if a rank failed."""
        from .worker import Worker

        url, name, worker_id, trainable, max_held = self.args
        group = None
        if self.ranks > 1:
            group = join_group(self.rank, self.ranks, address)
        store = open_store(url, create=False, wait=True) if self.rank == 0 else None
        worker = Worker(store, name, worker_id, trainable=trainable, max_held=max_held,
                        current=self.inside if self.rank == 0 else None, group=group, trust_spec_code=True)
        try:
            worker.run()
        except Exception:  # noqa: BLE001 - in a group, an error on any rank ends it; rank 0's member is charged
            if group is None:
                raise
            import traceback

            traceback.print_exc()
            return self.inside.member
        return None

    def interval(self) -> tuple[int, float]:
        """The member this worker is inside (-1: none) and for how many seconds its interval has run.

        A duration, not a time of day: on a cluster the driver's clock and this node's may differ.
        """
        return self.inside.member, time.monotonic() - self.inside.since


@dataclass
class Ray(Engine):
    """The shared worker loop as Ray actors, on a local Ray or the cluster at `address`.

    `workers` defaults to as many as the cluster's resources allow (at most one per member);
    `resources` is what each worker reserves, e.g. {"cpu": 4, "gpu": 0.5} (default: 1 CPU, and
    1 GPU when `device` is CUDA); `interval_timeout` (seconds) ends an actor whose member's
    interval runs longer, charging that member one failure. With `ranks_per_member=R` each
    worker is R actors in one placement group (each reserving `resources`), forming one process
    group that trains one member together (see docs/distributed.md).
    """

    name: ClassVar[str] = "ray"
    address: str | None = None
    workers: int | None = None
    resources: Mapping[str, float] | None = None
    device: str = "cpu"
    interval_timeout: float | None = None
    ranks_per_member: int | None = None

    def __post_init__(self) -> None:
        check_workers(self.name, self.workers)
        check_interval_timeout(self.name, self.interval_timeout)
        self.ranks = check_ranks(self.name, self.ranks_per_member)
        self.per_worker = worker_resources(self.resources, self.device)

    def run(self, store: Store, spec: ExperimentSpec, trainable: Any = None, progress: bool = False) -> None:
        """Run Ray actors until every member is done or failed; a dead actor is replaced."""
        try:
            import ray
        except ImportError:
            raise PoptrainError("the ray engine needs Ray: pip install 'poptrain[ray]'") from None
        if store.url.startswith("memory://"):
            raise PoptrainError("the ray engine needs a store its workers share: a sqlite:/// or postgresql:// URL")
        check_not_batched(store, spec.name, self.name)
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            workers = self._workers(ray, spec, started_here)
            # a class defined in the driver's script or notebook travels by value; any other is imported from the spec's paths
            shipped = trainable if trainable is not None and trainable.__module__ == "__main__" else None
            pool = ActorPool(ray, store.url, spec.name, shipped, -(-spec.population // workers), self.per_worker,
                             self.ranks)
            supervise(store, spec.name, pool, workers, progress, what="Ray workers",
                      interval_timeout=self.interval_timeout)
        finally:
            if started_here:
                ray.shutdown()

    def _workers(self, ray: Any, spec: ExperimentSpec, started_here: bool) -> int:
        cluster = ray.cluster_resources()
        wanted = {"CPU": self.per_worker["cpu"] * self.ranks, "GPU": self.per_worker["gpu"] * self.ranks}
        if started_here and self.address is None:  # a local Ray never grows: a worker asking for more would wait forever
            for key, amount in wanted.items():
                if amount > cluster.get(key, 0):
                    raise PoptrainError(f"each Ray worker asks for {amount:g} {key}(s) but this machine's Ray has "
                                        f"{cluster.get(key, 0):g}: lower --{key.lower()}s-per-worker, or pass --address "
                                        f"of a cluster that has them")
        if self.workers is not None:
            return self.workers
        # as many as the scarcest resource a worker asks for allows, at most one per member
        fits = [cluster.get(key, 0) // amount for key, amount in wanted.items() if amount > 0]
        return max(1, min(int(min(fits)), spec.population))


PLACEMENT_TIMEOUT = 300.0  # seconds a member's group of actors may take to be placed and started


class ActorPool:
    """The supervisor's view of Ray actors: start one worker (R actors in a placement group for R ranks), see
    which ended (a dead actor's member is unknown; a failed group names its member)."""

    def __init__(self, ray: Any, url: str, name: str, trainable: Any, max_held: int, per_worker: dict[str, float],
                 ranks: int = 1) -> None:
        self.ray, self.url, self.name, self.trainable, self.max_held = ray, url, name, trainable, max_held
        self.per_worker, self.ranks = per_worker, ranks
        self.actor = ray.remote(num_cpus=per_worker["cpu"], num_gpus=per_worker["gpu"], max_concurrency=2)(RayWorker)
        self.pending: dict[Any, tuple[str, Any]] = {}
        self.groups: dict[str, tuple[list[Any], Any]] = {}  # worker id -> its other ranks' actors, its placement group
        self.count = 0
        self.seen: dict[str, int] = {}  # worker id -> the member it was last seen inside
        self.reasons: dict[str, str] = {}  # worker id -> why the supervisor ended it
        self.asked: dict[str, Any] = {}  # worker id -> its unanswered `interval` question

    def start(self) -> str:
        worker_id = f"ray-{os.getpid()}-{self.count}"
        self.count += 1
        if self.ranks == 1:
            handle = self.actor.remote(self.url, self.name, worker_id, self.trainable, self.max_held)
            self.pending[handle.run.remote()] = (worker_id, handle)
            return worker_id
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundle = {key: amount for key, amount in (("CPU", self.per_worker["cpu"]), ("GPU", self.per_worker["gpu"]))
                  if amount > 0}
        group = placement_group([bundle] * self.ranks, strategy="PACK")  # the ranks of a member stay close
        actors = [self.actor.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank))
                  .remote(self.url, self.name, worker_id, self.trainable, self.max_held, rank, self.ranks)
                  for rank in range(self.ranks)]
        try:  # a placement group the cluster cannot place would leave this waiting for ever
            address = self.ray.get(actors[0].rendezvous.remote(), timeout=PLACEMENT_TIMEOUT)
        except self.ray.exceptions.GetTimeoutError:
            for actor in actors:
                self.ray.kill(actor)
            self.ray.util.remove_placement_group(group)
            raise PoptrainError(f"Ray could not place a member's {self.ranks} ranks within {PLACEMENT_TIMEOUT:.0f} s "
                                f"(each asks for {bundle}): lower ranks_per_member or the resources per worker, or "
                                f"add nodes") from None
        runs = [actor.run.remote(address) for actor in actors]
        self.pending[runs[0]] = (worker_id, actors[0])
        self.groups[worker_id] = (actors[1:], group)
        return worker_id

    def exited(self, timeout: float) -> list[Exit]:
        done, _ = self.ray.wait(list(self.pending), timeout=timeout)
        ended = []
        for ref in done:
            worker_id, handle = self.pending.pop(ref)
            member, reason = self.seen.pop(worker_id, None), self.reasons.pop(worker_id, None)
            self.asked.pop(worker_id, None)
            try:
                failed = self.ray.get(ref)
                ended.append(Exit(worker_id, 0) if failed is None else Exit(worker_id, 1, failed))
            except self.ray.exceptions.RayActorError as exc:  # the actor's process died (or was ended)
                if reason is None:  # not ended by the supervisor: say why Ray thinks it died
                    log.warning("Ray worker %s died: %s", worker_id, " ".join(str(exc).split())[:600])
                ended.append(Exit(worker_id, -9, member if reason else None, reason))
            self._end_group(worker_id, handle)
        return ended

    def _end_group(self, worker_id: str, handle: Any) -> None:
        """A group's rank 0 ended: end its other ranks and free its placement group."""
        if worker_id not in self.groups:
            return
        others, group = self.groups.pop(worker_id)
        for actor in [handle, *others]:
            self.ray.kill(actor)
        self.ray.util.remove_placement_group(group)

    def intervals(self) -> dict[str, tuple[int, float]]:
        for worker_id, handle in self.pending.values():  # one question out per actor: one not yet placed never answers
            if worker_id not in self.asked:
                self.asked[worker_id] = handle.interval.remote()
        if not self.asked:
            return {}
        answered, _ = self.ray.wait(list(self.asked.values()), num_returns=len(self.asked), timeout=0.5)
        found = {}
        for worker_id, ref in list(self.asked.items()):
            if ref not in answered:
                continue
            del self.asked[worker_id]
            try:
                member, running = self.ray.get(ref)
            except Exception:  # noqa: BLE001 - an actor that is ending or unreachable: its exit says the rest
                continue
            found[worker_id] = (member, time.time() - running)  # when it began, on the driver's clock
        self.seen.update({w: int(member) for w, (member, _) in found.items()})
        return found

    def end(self, worker_id: str, reason: str) -> None:
        for known, handle in self.pending.values():
            if known == worker_id and worker_id not in self.reasons:
                self.reasons[worker_id] = reason
                self.ray.kill(handle)

    def running(self) -> int:
        return len(self.pending)

    def stop(self) -> None:
        for worker_id, handle in self.pending.values():
            self.ray.kill(handle)
            self._end_group(worker_id, handle)
        self.pending.clear()
