"""The local engine's fork server: a process that imports once, then forks each worker.

It never imports the user's `__main__` (a notebook, `python -c`, a script without the
`if __name__ == "__main__":` guard all work). When the engine's process runs no thread but
poptrain's heartbeats, the server is a fork of it (`fork_server`: everything is imported
already). Otherwise (a notebook kernel, a run on a thread) it is a fresh interpreter running
this module, and the trainable arrives by value (cloudpickle) or by import path. Either way
poptrain and the trainable's module (torch with it) are imported before the first worker is
forked, so each worker starts in milliseconds, not seconds.

Run as `python -m poptrain.engines.forkserver COMMAND_FD EVENT_FD`. Commands (one JSON line
each, on COMMAND_FD): the set-up first, then {"start": worker_id, "slot": i}; end of input
stops every worker. Events (JSON lines on EVENT_FD): {"started", "pid"} and {"exited", "code",
"member"}. Which member each worker is inside, and since when, is in a table of slots shared
with the engine (a file whose descriptor the set-up names), where the engine's supervisor
reads it to enforce `interval_timeout`. The server is single-threaded, so forking it is safe.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import signal
import struct
import sys
import threading
import time
import traceback
from typing import Any

SLOT = struct.Struct("qd")  # the member a worker is inside (-1: none) and when its interval began


class Slot:
    """One worker's entry in the shared table: which member it is training, since when."""

    def __init__(self, table: mmap.mmap, index: int) -> None:
        self.table, self.index, self.offset = table, index, index * SLOT.size

    @property
    def value(self) -> int:
        return SLOT.unpack_from(self.table, self.offset)[0]

    @value.setter
    def value(self, member: int) -> None:
        SLOT.pack_into(self.table, self.offset, member, time.time())

    def since(self) -> float:
        return SLOT.unpack_from(self.table, self.offset)[1]


def slot_table(fd: int, slots: int) -> mmap.mmap:
    """The shared table of `slots` worker slots, mapped from the file `fd` (sized to fit)."""
    os.ftruncate(fd, SLOT.size * slots)
    return mmap.mmap(fd, SLOT.size * slots)


class Server:
    """Forks workers on command and reports how each ends."""

    def __init__(self, commands: int, events: int, setup: dict[str, Any], trainable: Any) -> None:
        self.commands, self.events, self.setup, self.trainable = commands, events, setup, trainable
        self.table = slot_table(int(setup["table_fd"]), int(setup["slots"]))
        self.children: dict[int, tuple[str, int]] = {}  # pid -> (worker id, slot)

    def send(self, **event: Any) -> None:
        os.write(self.events, (json.dumps(event) + "\n").encode())

    def serve(self) -> None:
        buffer = b""
        while True:
            ready, _, _ = select.select([self.commands], [], [], 0.05)
            if ready:
                chunk = os.read(self.commands, 65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    command = json.loads(line)
                    self.fork(command["start"], int(command["slot"]))
            self.reap()

    def fork(self, worker_id: str, slot: int) -> None:
        Slot(self.table, slot).value = -1
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(self.commands)
                os.close(self.events)
                code = work(self.setup, worker_id, self.trainable, Slot(self.table, slot))
            except BaseException:  # noqa: BLE001 - a worker must never return into the server's loop
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = (worker_id, slot)
        self.send(started=worker_id, pid=pid)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker_id, slot = self.children.pop(pid)
            self.send(exited=worker_id, code=os.waitstatus_to_exitcode(status), member=Slot(self.table, slot).value)

    def stop(self) -> None:
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while self.children and time.time() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.02)
            else:
                self.children.pop(pid, None)
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def work(setup: dict[str, Any], worker_id: str, trainable: Any, slot: Slot) -> int:
    """One worker process: join the experiment by URL and work until it is done.

    With `ranks_per_member` above 1 it first forks the member's other ranks, and all of them
    work as one process group (see `ranks`); only rank 0 opens the store.
    """
    from ..errors import PoptrainError
    from ..store import open_store
    from .ranks import end_ranks, fork_ranks, join_group
    from .supervisor import STOPPED_ON_ERROR
    from .worker import Worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to handle: it stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    watch_parent(os.getppid())
    ranks = int(setup.get("ranks_per_member") or 1)
    rank, children, group = 0, [], None
    if ranks > 1:  # before any thread or store: forking stays safe
        rank, children = fork_ranks(ranks, watch_parent)
    if setup.get("threads") and "torch" in sys.modules:
        import torch

        torch.set_num_threads(int(setup["threads"]))
    try:
        if ranks > 1:
            group = join_group(rank, ranks, os.path.join(setup["group_dir"], worker_id), slot.index)
        store = open_store(setup["url"], wait=True) if rank == 0 else None
        Worker(store, setup["name"], worker_id, trainable=trainable, max_held=setup.get("max_held"),
               current=slot if rank == 0 else None, group=group, trust_spec_code=True).run()
    except PoptrainError as exc:  # a storage error no retry mends (a full disk): one line, and the run stops
        print(f"poptrain: error: worker {worker_id}: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return STOPPED_ON_ERROR
    finally:
        end_ranks(children)
    return 0


def watch_parent(parent: int) -> None:
    """End this worker if the server that forked it is gone (the engine was killed)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def preload_torch() -> None:
    """With torch loaded, import what a first optimiser step would (about 1 s each worker would pay)."""
    if "torch" not in sys.modules:
        return
    import importlib

    for module in ("torch.optim", "torch._dynamo"):  # imports only: no thread starts, so forking stays safe
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a speed-up only; a worker imports what it needs anyway
            pass


def main(argv: list[str]) -> None:
    commands, events = int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader = os.fdopen(os.dup(commands), "rb")
    setup = json.loads(reader.readline())
    blob = reader.read(int(setup["trainable_bytes"])) if setup["trainable_bytes"] else b""
    reader.close()  # a buffered reader may hold bytes after the blob: the engine sends nothing more until told
    for path in reversed(setup["sys_path"]):
        if path not in sys.path:
            sys.path.insert(0, path)
    events_out = Server(commands, events, setup, None)
    try:
        import pickle

        import cloudpickle  # noqa: F401 - classes shipped by value need it to unpickle

        from . import worker  # noqa: F401 - imported once here, inherited by every worker
        from ..trainable import resolve_trainable

        trainable = pickle.loads(blob) if blob else None
        # by import path it is imported now, so each worker inherits the module
        resolve_trainable(trainable or setup["trainable"], setup["paths"])
        preload_torch()
    except Exception as exc:  # noqa: BLE001 - reported to the engine as one line
        events_out.send(error=" ".join(traceback.format_exception_only(type(exc), exc)).strip())
        return
    run_server(commands, events, setup, trainable)


def run_server(commands: int, events: int, setup: dict[str, Any], trainable: Any) -> None:
    """Serve until the engine closes its end: fork workers on command, report their ends."""
    server = Server(commands, events, setup, trainable)
    server.send(ready=True)
    try:
        server.serve()
    finally:
        server.stop()


def fork_server(commands: int, events: int, setup: dict[str, Any], trainable: Any, engine_ends: tuple[int, ...]) -> int:
    """Become the fork server in a child of this process (already holding poptrain, torch and the trainable).

    Only for a process with no thread but poptrain's heartbeats (a forked child keeps just the
    forking thread, and a lock another thread held would stay held); nothing is imported again.
    """
    sys.stdout.flush()  # what this process has buffered must not be written a second time by the child
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        for fd in engine_ends:  # the engine's ends of the pipes: held here, the command pipe would never close
            os.close(fd)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        preload_torch()
        run_server(commands, events, setup, trainable)
    except BaseException:  # noqa: BLE001 - the child must never return into the engine's code
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv)
