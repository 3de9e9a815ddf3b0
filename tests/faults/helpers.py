"""Shared pieces of the fault tests: the experiment, a run in a thread, waits, and the audit of a finished run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import poptrain
from poptrain.errors import CorruptCheckpoint
from poptrain.store import CheckpointStore, Store, open_store
from trainables import StepLog

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)


def experiment(url: str, **kw: Any) -> poptrain.Experiment:
    """A cheap experiment on StepLog whose members survive being killed many times (max_failures)."""
    base = dict(name="f", trainable=StepLog, space={"lr": poptrain.LogUniform(0.01, 0.3)}, metric="score",
                population=8, steps=30, ready=poptrain.Every(3), storage=url, seed=5, lease=10.0, paths=[TESTS],
                keep_checkpoints=100, max_failures=1000)
    return poptrain.Experiment(**{**base, **kw})


class Run:
    """`Experiment.run` (or `poptrain.resume`) on a thread of this process, so its workers are our children."""

    def __init__(self, start: Callable[[], poptrain.Result]) -> None:
        self.result: poptrain.Result | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(start,), daemon=True)
        self.thread.start()

    def _main(self, start: Callable[[], poptrain.Result]) -> None:
        try:
            self.result = start()
        except BaseException as exc:  # handed to the test by finish()
            self.error = exc

    def alive(self) -> bool:
        return self.thread.is_alive()

    def finish(self, timeout: float = 120) -> poptrain.Result:
        """Wait for the run; its Result, or what it raised."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the run did not finish in {timeout} s"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def steps_done(url: str, name: str) -> int:
    """Intervals reported so far (0 while the store or experiment does not exist yet)."""
    try:
        return open_store(url).progress(name, "max").steps_done
    except poptrain.StorageError:
        return 0


def resume_command(url: str, name: str = "f", quiet: bool = True) -> list[str]:
    """`poptrain resume` of an experiment with the local engine's 2 workers, as a separate process runs it.

    `--quiet` silences the workers' warnings too (they inherit the command's logging).
    """
    return [sys.executable, "-m", "poptrain", "resume", "--storage", url, "--experiment", name, "--workers", "2",
            *(["--quiet"] if quiet else [])]


def kill_run_when(command: list[str], env: dict[str, str], condition: Callable[[], bool], what: str) -> None:
    """Start `command` in its own process group, and SIGKILL the whole group (engine and workers) once `condition` holds."""
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: condition() or proc.poll() is not None, what, timeout=90)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def trained_steps(log: Path, store: Store, name: str) -> dict[int, list[int]]:
    """The steps each member trained, in order, from StepLog's file ('seed step' lines)."""
    ids = {m.seed: m.id for m in store.members(name)}
    out: dict[int, list[int]] = {i: [] for i in ids.values()}
    if log.exists():
        for line in log.read_text().splitlines():
            seed, step = map(int, line.split())
            out[ids[seed]].append(step)
    return out


@dataclass
class Audit:
    """What a finished run kept: members at their budget, reports and events lost or duplicated, checkpoints."""

    members: int
    completed: int
    rows: int
    lost: int
    duplicated: int
    unexpected: int
    checkpoints: int
    corrupt: list[str]

    def tally(self) -> dict[str, int]:
        return dict(members=self.members, completed=self.completed, rows=self.rows, lost=self.lost,
                    duplicated=self.duplicated + self.unexpected)

    def assert_clean(self) -> None:
        assert self.completed == self.members, self
        assert (self.lost, self.duplicated, self.unexpected) == (0, 0, 0), self
        assert not self.corrupt, self


def audit(store: Store, name: str, steps: int, checkpoints: str) -> Audit:
    """Count, without asserting, what a run left: a report per member and step, one event per decision."""
    members = store.members(name)
    seen = Counter((r.member, r.step) for r in store.reports(name))
    expected = {(m.id, s) for m in members for s in range(1, steps + 1)}
    events = Counter((e.member, e.step) for e in store.events(name))  # a member decides once per ready step
    files = CheckpointStore(checkpoints)
    count, corrupt = 0, []
    for m in members:
        for c in store.checkpoints(name, m.id):
            count += 1
            try:
                files.load(c.key, c.checksum)
            except CorruptCheckpoint:
                corrupt.append(c.key)
    return Audit(members=len(members), completed=sum(m.status == "done" and m.step == steps for m in members),
                 rows=len(expected), lost=len(expected - set(seen)),
                 duplicated=sum(n - 1 for n in seen.values()) + sum(n - 1 for n in events.values()),
                 unexpected=len(set(seen) - expected), checkpoints=count, corrupt=corrupt)
