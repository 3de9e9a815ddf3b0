"""The local engine: worker processes on this machine sharing one store by URL.

Workers are forked by a fresh interpreter running poptrain's own fork server, never by
re-running the user's script: a trainable defined in a notebook cell, in `python -c` or in an
unguarded script travels by value (cloudpickle), and every worker starts from a process that
has already imported poptrain and the trainable's module.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import PoptrainError
from ..spec import ExperimentSpec
from ..store import Store
from ..trainable import resolve_trainable
from .base import Engine, check_not_batched, check_workers
from .forkserver import Slot, fork_server, slot_table
from .ranks import check_ranks
from .supervisor import Exit, check_interval_timeout, supervise


@dataclass
class Local(Engine):
    """`workers` processes on this machine (default: one per CPU); `interval_timeout` (seconds) ends a
    worker whose member's interval runs longer, charging that member one failure.

    With `ranks_per_member=R` each worker is a process group of R processes training one member
    together (DDP, FSDP): gloo on the CPU, NCCL with one GPU per rank when CUDA is present; the
    trainable sees `torch.distributed` initialised (see docs/distributed.md).
    """

    name: ClassVar[str] = "local"
    workers: int | None = None
    interval_timeout: float | None = None
    max_restarts: int | None = None
    ranks_per_member: int | None = None
    _pids: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_workers(self.name, self.workers)
        check_interval_timeout(self.name, self.interval_timeout)
        check_ranks(self.name, self.ranks_per_member)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers alive now (for tools and fault tests)."""
        return list(self._pids.values())

    def run(self, store: Store, spec: ExperimentSpec, trainable: Any = None, progress: bool = False) -> None:
        """Run the workers until every member is done or failed; a dead worker is replaced."""
        if store.url.startswith("memory://"):
            raise PoptrainError("the local engine needs a store that processes share: use a sqlite:/// URL, "
                                "or engine='serial' for a memory:// store")
        check_not_batched(store, spec.name, self.name)
        ranks = check_ranks(self.name, self.ranks_per_member)
        workers = self.workers or max(1, (os.cpu_count() or 1) // ranks)
        group_dir = tempfile.TemporaryDirectory(prefix="poptrain-groups-")  # each worker's rendezvous file
        setup = {
            "url": store.url, "name": spec.name, "threads": max(1, (os.cpu_count() or 1) // (workers * ranks)),
            "ranks_per_member": ranks, "group_dir": group_dir.name,
            "max_held": -(-spec.population // workers),  # each worker keeps about its share of the population
            "slots": workers + 64, "sys_path": list(sys.path),
            "trainable": spec.trainable if isinstance(spec.trainable, str) else None, "paths": spec.paths,
        }
        with group_dir:
            pool = ForkServerPool(setup, trainable, self._pids)
            supervise(store, spec.name, pool, workers, progress, self.max_restarts,
                      interval_timeout=self.interval_timeout)


class ForkServerPool:
    """The supervisor's view of the fork server: start a worker, see which ended."""

    def __init__(self, setup: dict[str, Any], trainable: Any, pids: dict[str, int]) -> None:
        commands_r, self.commands = os.pipe()
        events_r, events_w = os.pipe()
        self.table_file = tempfile.TemporaryFile()  # the slots the server's workers write and the supervisor reads
        setup = {**setup, "table_fd": self.table_file.fileno()}
        self.table = slot_table(self.table_file.fileno(), int(setup["slots"]))
        self.reasons: dict[str, str] = {}  # worker id -> why the supervisor ended it
        if only_our_threads():  # fork this process: poptrain, torch and the trainable are imported already
            trainable = trainable or resolve_trainable(setup["trainable"], setup["paths"])
            self.server: Any = ForkedProcess(fork_server(commands_r, events_w, setup, trainable,
                                                         (self.commands, events_r)))
            blob = None
        else:  # a fresh interpreter, which gets the set-up and the trainable by value through the pipe
            import cloudpickle

            blob = b"" if trainable is None else cloudpickle.dumps(trainable)
            self.server = subprocess.Popen([sys.executable, "-m", "poptrain.engines.forkserver", str(commands_r),
                                            str(events_w)], pass_fds=(commands_r, events_w, setup["table_fd"]),
                                           stdin=subprocess.DEVNULL)
        os.close(commands_r)
        os.close(events_w)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, args=(events_r,), daemon=True)
        self.reader.start()
        self.pids, self.slots, self.free = pids, {}, list(range(int(setup["slots"])))
        self.count = 0
        self.prefix = f"local-{os.getpid()}"
        if blob is not None:
            os.write(self.commands, (json.dumps({**setup, "trainable_bytes": len(blob)}) + "\n").encode() + blob)
        first = self.events.get()
        if "error" in first:
            self.stop()
            raise PoptrainError(f"the local engine's workers cannot load the trainable: {first['error']}")
        if not first.get("ready"):
            self.stop()
            raise PoptrainError("the local engine's fork server ended before it was ready; see the log above")

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            for line in f:
                self.events.put(json.loads(line))
        self.events.put({"closed": True})

    def start(self) -> str:
        if self.server.poll() is not None:
            raise PoptrainError(f"the local engine's fork server ended (exit code {self.server.returncode}); "
                                f"see the log above, then `poptrain resume`")
        worker_id = f"{self.prefix}-{self.count}"
        self.count += 1
        slot = self.free.pop(0)
        self.slots[worker_id] = slot
        os.write(self.commands, (json.dumps({"start": worker_id, "slot": slot}) + "\n").encode())
        return worker_id

    def exited(self, timeout: float) -> list[Exit]:
        ended = []
        try:
            event = self.events.get(timeout=timeout)
            while True:
                if "started" in event:
                    self.pids[event["started"]] = event["pid"]
                elif "exited" in event:
                    worker_id = event["exited"]
                    self.pids.pop(worker_id, None)
                    self.free.append(self.slots.pop(worker_id))
                    ended.append(Exit(worker_id, event["code"], event["member"], self.reasons.pop(worker_id, None)))
                elif "closed" in event and self.slots:  # the server itself died: its workers went with it
                    ended.extend(Exit(w, -9, None) for w in self.slots)
                    self.slots.clear()
                    self.pids.clear()
                event = self.events.get_nowait()
        except queue.Empty:
            pass
        return ended

    def running(self) -> int:
        return len(self.slots)

    def intervals(self) -> dict[str, tuple[int, float]]:
        return {w: (Slot(self.table, slot).value, Slot(self.table, slot).since()) for w, slot in self.slots.items()}

    def end(self, worker_id: str, reason: str) -> None:
        pid = self.pids.get(worker_id)  # None until its start is seen: the next check ends it
        if pid is not None and worker_id not in self.reasons:
            self.reasons[worker_id] = reason
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        try:
            os.close(self.commands)  # end of input: the server stops its workers and exits
        except OSError:
            pass
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.pids.clear()
        self.table_file.close()


def only_our_threads() -> bool:
    """Whether this process runs no thread but poptrain's heartbeats, so forking it is safe."""
    return all(t is threading.main_thread() or t.name.startswith("poptrain-heartbeat-") for t in threading.enumerate())


class ForkedProcess:
    """A forked child, seen through the calls the pool makes of a subprocess.Popen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"fork server {self.pid}", timeout or 0)
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
