"""A worker whose member spans several processes: it forks the other ranks and they form one process group.

With `ranks_per_member=R`, each worker the engine starts is rank 0 of a group of R processes:
it forks ranks 1..R-1 before it touches the store, and every rank joins a torch.distributed
group (gloo on the CPU; NCCL with one GPU per rank, each rank pinned to its device, when CUDA
devices are present) through a file rendezvous private to that worker. The ranks then run the
same worker loop over a `GroupConnection`, so they train one member at a time together. A rank
that dies ends the group: the others fail at their next collective, rank 0's exit charges its
member one failure, and the engine starts a new group.
"""

from __future__ import annotations

import datetime
import os
import signal
import time
from typing import Any, Callable

from .base import check_workers

GROUP_TIMEOUT = datetime.timedelta(minutes=10)  # the longest any collective of a worker's group may wait


def check_ranks(engine: str, ranks: Any) -> int:
    """Ranks per member: a positive integer (1: one process is one member)."""
    return check_workers(engine, ranks, "ranks_per_member") or 1


def fork_ranks(ranks: int, watch: Callable[[int], None]) -> tuple[int, list[int]]:
    """Fork ranks 1..ranks-1 of this worker's group: (this process's rank, the children's pids, in rank 0 only).

    Each child watches its parent (`watch`), so a rank 0 that is killed takes its ranks with it.
    """
    children: list[int] = []
    for rank in range(1, ranks):
        pid = os.fork()
        if pid == 0:
            watch(os.getppid())
            return rank, []
        children.append(pid)
    return 0, children


def join_group(rank: int, ranks: int, rendezvous: str | None, index: int = 0) -> Any:
    """Join this worker's group as `rank` of `ranks` (the default process group); its group.

    `rendezvous` is a file path (ranks on this machine) or a tcp:// address of rank 0's.
    """
    import torch
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(ranks))
    backend = "gloo"
    if torch.cuda.is_available():  # one GPU per rank: worker `index`'s ranks take the next `ranks` devices
        # (under Ray each actor sees only the GPU it reserved, as device 0)
        torch.cuda.set_device((index * ranks + rank) % torch.cuda.device_count())
        backend = "nccl"
    if rendezvous and rendezvous.startswith("tcp://"):
        dist.init_process_group(backend, init_method=rendezvous, rank=rank, world_size=ranks, timeout=GROUP_TIMEOUT)
    else:
        dist.init_process_group(backend, store=dist.FileStore(rendezvous, ranks), rank=rank, world_size=ranks,
                                timeout=GROUP_TIMEOUT)
    return dist.group.WORLD


def end_ranks(children: list[int], grace: float = 5.0) -> None:
    """Wait for the other ranks to finish (a moment), then end whichever is left."""
    deadline = time.monotonic() + grace
    left = list(children)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.remove(pid)
        time.sleep(0.02)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
