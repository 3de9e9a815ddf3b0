"""A population split into shards: batched sub-populations, each in a process of its own, driven as one model.

`ShardedPopulation` has the batched model's methods (train, evaluate, set_hparams,
copy_members, state_dict, load_state_dict), so the vectorized engine and its ask/tell
(`LiveBatch`) use it unchanged: ready, exploit and explore stay decisions about one population.
Shard k holds a contiguous slice of the members and trains it as its own batched model, in
parallel with the others. An exploit within a shard stays an index copy; one across shards
gathers the sources' state in their shard (`export_members`) and sends it to the copies' shard
(`import_members`), both taken before any copy is written, as one process's `copy_members` does.

Every command is one pickled message on the shard's pipe; the shards work on theirs at once
and the driver then collects every reply in order. A shard that raises sends its error back
(the driver raises it: the batched step's failure, charged to every member); a shard that dies
is noticed within a second of its death.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
from typing import Any, Sequence

from ..errors import SpecError
from ..records import Hparams
from ..store.checkpoints import SHARDS
from ..wire import dumps

_POLL = 1.0  # seconds between checks that a shard the driver waits for is alive


def copies_more_than_it_exports(batched: type) -> bool:
    """Whether `batched` overrides copy_members below the classes that give its export_members and import_members:
    its own copy may take state (a second network, say) that a copy between shards would silently leave behind."""
    mro = batched.__mro__

    def owner(name: str) -> int:
        return next((i for i, cls in enumerate(mro) if name in vars(cls)), len(mro))

    return owner("copy_members") < min(owner("export_members"), owner("import_members"))


def split(size: int, shards: int) -> list[int]:
    """Contiguous shard sizes for `size` members: as even as can be, the larger ones first."""
    return [size // shards + (k < size % shards) for k in range(shards)]


class ShardError(RuntimeError):
    """What a shard raised, or its death: the batched step's failure."""


class ShardedPopulation:
    """The batched model's methods over `len(devices)` shard processes, shard k on `devices[k]`."""

    def __init__(self, batched: type, hparams: Sequence[Hparams], seeds: Sequence[int], devices: Sequence[str],
                 threads: int = 1, compile: bool = False, memory_limit: int | None = None) -> None:
        sizes = split(len(seeds), len(devices))
        assert min(sizes) >= 1, "the engine refuses more shards than members"
        self.shard_sizes = sizes  # the population file's layout (asktell.batch.check_layout)
        self.starts = [sum(sizes[:k]) for k in range(len(sizes))]
        # fork: the class arrives as it is (defined in a notebook or `__main__` too), in milliseconds; on CUDA a
        # forked child cannot use the device the driver may have touched, so shards on GPUs start fresh (spawn)
        # (and torch's thread pool, once used, does not survive a fork either: a shard of several threads starts fresh)
        method = "fork" if threads == 1 and all(str(d).startswith("cpu") for d in devices) else "spawn"
        context = multiprocessing.get_context(method)
        self.pipes: list[Any] = []
        self.processes: list[Any] = []
        try:
            for k, (start, size) in enumerate(zip(self.starts, sizes)):
                ours, theirs = context.Pipe()
                setup = (batched, list(hparams[start:start + size]), list(seeds[start:start + size]), str(devices[k]),
                         threads, compile, memory_limit)
                process = context.Process(target=serve, args=(theirs, setup), name=f"poptrain-shard-{k}", daemon=True)
                process.start()
                theirs.close()
                self.pipes.append(ours)
                self.processes.append(process)
            self._collect(range(len(sizes)))  # each shard's model is built (or its error raised here)
        except BaseException:
            self.close()
            raise

    # the batched model's methods
    def train(self) -> None:
        self._everywhere("train")

    def evaluate(self) -> list[Any]:
        return [r for results in self._everywhere("evaluate") for r in results]

    def compile(self) -> None:
        self._everywhere("compile")

    def set_hparams(self, member: int, hparams: Hparams) -> None:
        k, i = self._locate(member)
        self._send(k, ("set_hparams", i, hparams))
        self._collect([k])

    def copy_members(self, dsts: Sequence[int], srcs: Sequence[int]) -> None:
        """Each `dsts[i]` becomes a copy of `srcs[i]` as it was before any copy, wherever the two are held."""
        within: dict[int, tuple[list[int], list[int]]] = {}
        across: dict[tuple[int, int], tuple[list[int], list[int]]] = {}  # (from, to) shard: local dsts and srcs
        for dst, src in zip(dsts, srcs):
            (kd, d), (ks, s) = self._locate(dst), self._locate(src)
            pair = within.setdefault(kd, ([], [])) if kd == ks else across.setdefault((ks, kd), ([], []))
            pair[0].append(d)
            pair[1].append(s)
        for (ks, _), (_, s) in across.items():  # gathered first: every source as it is before any copy
            self._send(ks, ("export_members", s))
        exported = dict(zip(across, self._collect([ks for ks, _ in across])))
        for kd, (d, s) in within.items():
            self._send(kd, ("copy_members", d, s))
        for (ks, kd), (d, _) in across.items():
            self._send(kd, ("import_members", d, exported[ks, kd]))
        self._collect([*within, *(kd for _, kd in across)])

    def state_dict(self) -> dict[str, Any]:
        """Each shard's state, in order, with the shards' sizes: the population file's layout."""
        return {SHARDS: list(self.shard_sizes), "states": self._everywhere("state_dict")}

    def load_state_dict(self, state: Any) -> None:
        """Each shard's part of a `state_dict` (the ask/tell layer has checked its layout: `check_layout`)."""
        for k, part in enumerate(state["states"]):
            self._send(k, ("load_state_dict", part))
        self._collect(range(len(self.shard_sizes)))

    def close(self) -> None:
        """End every shard and wait for it (one still busy after 5 s, training say, is killed)."""
        for pipe in self.pipes:
            try:
                pipe.send_bytes(pickle.dumps(None))
            except OSError:
                pass  # that shard is gone already
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.processes = [], []

    # the protocol
    def _locate(self, member: int) -> tuple[int, int]:
        """(shard, index in it) of a member's index in the population."""
        for k in reversed(range(len(self.starts))):
            if member >= self.starts[k]:
                return k, member - self.starts[k]
        raise IndexError(member)

    def _send(self, k: int, command: tuple[Any, ...]) -> None:
        try:
            self.pipes[k].send_bytes(dumps(command))
        except OSError:
            raise self._death(k) from None

    def _everywhere(self, method: str) -> list[Any]:
        for k in range(len(self.pipes)):
            self._send(k, (method,))
        return self._collect(range(len(self.pipes)))

    def _collect(self, shards: Sequence[int]) -> list[Any]:
        """One reply from each of `shards`, in order; every one is read before the first error is raised."""
        replies, errors = [], []
        for k in shards:
            try:
                while not self.pipes[k].poll(_POLL):
                    if not self.processes[k].is_alive():
                        raise self._death(k)
                ok, value = pickle.loads(self.pipes[k].recv_bytes())  # our own shard's reply, not stored data
                if not ok:
                    errors.append(value if isinstance(value, SpecError) else ShardError(f"shard {k}: {value}"))
            except (EOFError, OSError):
                errors.append(self._death(k))
                value = None
            except ShardError as exc:
                errors.append(exc)
                value = None
            replies.append(value)
        if errors:
            raise errors[0]
        return replies

    def _death(self, k: int) -> ShardError:
        process = self.processes[k]
        process.join(timeout=_POLL)
        return ShardError(f"shard {k} (pid {process.pid}) died (exit code {process.exitcode})")


def serve(pipe: Any, setup: tuple[Any, ...]) -> None:
    """A shard: build its batched sub-population, then carry out the driver's commands until told to stop."""
    import torch

    batched, hparams, seeds, device, threads, compile, memory_limit = setup
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver ends us
    torch.set_num_threads(threads)
    model: Any = None

    def build() -> None:
        nonlocal model
        if memory_limit is not None or not device.startswith("cpu"):
            from ..torch.memory import check_fits
            from ..torch.vectorized import BatchedTrainable

            if issubclass(batched, BatchedTrainable):
                check_fits(batched, hparams, seeds, device, memory_limit)
        model = batched(hparams, seeds, device=device)
        if compile and hasattr(model, "compile"):
            model.compile()

    def run(name: str, *args: Any) -> Any:
        if name in ("export_members", "import_members") and not hasattr(model, name):
            raise SpecError(f"{batched.__name__} cannot be sharded: a copy between shards needs its export_members "
                            f"and import_members (poptrain.torch.BatchedTrainable has both)")
        if name in ("export_members", "import_members") and copies_more_than_it_exports(batched):
            raise SpecError(f"{batched.__name__} cannot be sharded: it overrides copy_members, which a copy between "
                            f"shards does not call; override export_members and import_members instead, so that "
                            f"they carry everything its copy takes")
        return getattr(model, name)(*args)

    call, command = build, ()
    while True:
        try:
            reply = (True, call(*command))
        except Exception as exc:  # noqa: BLE001 - the driver raises it: the batched step's failure
            reply = (False, exc if isinstance(exc, SpecError) else ShardError(f"{type(exc).__name__}: {exc}"))
        try:
            message = dumps(reply)
        except Exception as exc:  # noqa: BLE001 - e.g. evaluate() returned what pickle cannot carry
            message = pickle.dumps((False, ShardError(f"its reply cannot be sent: {type(exc).__name__}: {exc}")))
        pipe.send_bytes(message)
        try:
            command = pickle.loads(pipe.recv_bytes())
        except (EOFError, OSError):
            return  # the driver is gone
        if command is None:
            return
        call = run
