"""What the engine conformance suite shares: the engines and what each can meet, the spec, runs and comparisons."""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

import poptrain
from faults.helpers import experiment

ENGINES = ("serial", "local", "vectorized", "sharded", "ray")  # every engine poptrain ships; a new one is added here
# cases that are an engine with options: the vectorized engine's population in 3 shards (of 2, 1 and 1 members, so
# that exploits copy both within a shard and across shards)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"sharded": ("vectorized", {"shards": 3})}
WORKERS = 2  # worker processes, for the engines that run them
POPULATION, STEPS, READY = 4, 12, 3
SLEEP = 0.03  # seconds per member-interval: long enough to interrupt a run or kill a worker mid-way

# Cases an engine cannot meet by its nature: not generated for it (so nothing is skipped), with the reason;
# test_the_suite_covers_every_engine checks this list against the engines' options.
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("worker_killed", "serial"): "the serial engine trains every member in this process: no worker process to kill",
    ("worker_killed", "vectorized"): "the vectorized engine trains the population as one model in this process: "
                                     "no worker process to kill",
    ("worker_killed", "sharded"): "a shard holds several members, so its death costs each of them a failure "
                                  "(test_engine_vectorized.py kills one)",
}
# Cases an engine fails today because of a defect in the engine: expected to fail until it is fixed.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


def each_engine(case: str) -> list[Any]:
    """The engines to run `case` on (pass to parametrize with indirect=True), marked where they cannot meet it."""
    params = []
    for name in ENGINES:
        marks: list[Any] = []
        if (case, name) in NOT_APPLICABLE:
            continue
        if (case, name) in KNOWN_DEFECTS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[case, name]))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def has_workers(engine: str) -> bool:
    """Whether the engine trains members in worker processes: it has a `workers` option."""
    import dataclasses

    from poptrain.engines import engine_class

    return "workers" in {f.name for f in dataclasses.fields(engine_class(VARIANTS.get(engine, (engine,))[0]))}


def options(engine: str) -> dict[str, Any]:
    """The engine (by name) and its options for the case `engine`, with WORKERS workers where it has them."""
    name, extra = VARIANTS.get(engine, (engine, {}))
    return {"engine": name, "workers": WORKERS if has_workers(engine) else None, **extra}


def run_on(exp: poptrain.Experiment, engine: str) -> poptrain.Result:
    """Run `exp` on `engine` through the public API."""
    return exp.run(**options(engine))


def resume_on(url: str, name: str, engine: str) -> poptrain.Result:
    """`poptrain.resume` on `engine`; forced, since an interrupted run's leases are still live."""
    return poptrain.resume(url, name, **options(engine), force=True)


def spec(url: str, **kw: Any) -> poptrain.Experiment:
    """The suite's experiment: synchronous, so that every engine makes the same decisions for the same seeds."""
    from trainables import Traced

    base = dict(trainable=Traced, population=POPULATION, steps=STEPS, ready=poptrain.Every(READY),
                synchronous=True, exploit=poptrain.Truncation(0.25))
    return experiment(url, **{**base, **kw})


@dataclass(frozen=True)
class Outcome:
    """What a finished run decided and reported, free of timing: the engines must agree on it."""

    decisions: list[tuple[int, int, int, dict[str, Any]]]  # (member, step, source, new hparams)
    reports: list[tuple[int, int, float]]  # (member, step, score)
    hparams: dict[int, dict[str, Any]]  # each member's final hyperparameters

    @classmethod
    def of(cls, result: poptrain.Result) -> Outcome:
        events = sorted((e.member, e.step, e.source, e.new_hparams) for e in result.events())
        reports = sorted((r.member, r.step, r.score) for r in result.store.reports(result.name))
        return cls(events, reports, {m.id: m.hparams for m in result.store.members(result.name)})


@dataclass
class Logs:
    """The trainables' logs: 'seed step' per member-interval trained, and the pid that trained it."""

    trained: Path
    pids: Path

    def clear(self) -> None:
        self.trained.write_text("")
        self.pids.write_text("")

    def lines(self) -> list[str]:
        return self.trained.read_text().splitlines()

    def worker_pids(self) -> list[int]:
        """The processes other than this one that trained an interval, the latest last."""
        seen = [int(p) for p in self.pids.read_text().split()]
        return list(dict.fromkeys(p for p in reversed(seen) if p != os.getpid()))[::-1]


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def interrupt(start: Callable[[], Any], when: Callable[[], bool], timeout: float = 60) -> None:
    """Call `start()` in this (main) thread and interrupt it, as Ctrl-C would, once `when()` holds.

    Fails the test if `start()` returns before that.
    """
    lock, running = threading.Lock(), [True]

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if not running[0]:
                    return
                if when():
                    _thread.interrupt_main()
                    return
            time.sleep(0.01)

    # interrupt_main does nothing while SIGINT is ignored, as it is for a command a shell put in the background
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            try:
                start()
            finally:
                with lock:  # an interrupt sent just as start() returned still lands inside pytest.raises
                    running[0] = False
    finally:
        watcher.join()
        signal.signal(signal.SIGINT, previous)
