"""SIGKILL a random worker process every few seconds while 4 workers train: nothing is lost or duplicated."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from poptrain.engines import Local

from checks import assert_consistent_lineage
from faults import tally
from faults.helpers import Run, audit, experiment, steps_done

pytestmark = pytest.mark.slow

POPULATION, STEPS, WORKERS = 8, 40, 4
KILLS, EVERY = 8, 1.2  # at most KILLS kills, one every EVERY seconds, while the run is short of 80% done


class Killer(threading.Thread):
    """SIGKILLs a random child process of this test (the engine's workers) every `every` seconds."""

    def __init__(self, run: Run, engine: Local, url: str, name: str, total: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.run_, self.url, self.name, self.total = run, url, name, total
        self.rng = random.Random(seed)
        self.killed: list[tuple[int, int]] = []  # (pid, steps done when killed)
        self.stop = threading.Event()

    def run(self) -> None:
        while len(self.killed) < KILLS and not self.stop.wait(EVERY) and self.run_.alive():
            done = steps_done(self.url, self.name)
            if done >= 0.8 * self.total:
                return
            workers = self.engine.worker_pids()
            if done == 0 or not workers:
                continue
            victim = self.rng.choice(workers)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:  # it exited on its own just now
                continue
            self.killed.append((victim, done))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_random_worker_kills_lose_nothing(tmp_path, monkeypatch, request, backend):
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.1")
    url = f"sqlite:///{tmp_path}/k.db" if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    exp = experiment(url, population=POPULATION, steps=STEPS, checkpoints=str(tmp_path / "ckpt"))
    started = time.monotonic()
    engine = Local(workers=WORKERS)
    run = Run(lambda: exp.run(engine=engine))
    killer = Killer(run, engine, url, "f", POPULATION * STEPS, seed=hash(backend) % 1000)
    killer.start()
    try:
        result = run.finish(180)
    finally:
        killer.stop.set()
        killer.join(10)
    elapsed = time.monotonic() - started
    found = audit(result.store, "f", STEPS, result.spec["checkpoints"])
    tally.add(kills=len(killer.killed), **found.tally())
    assert len(killer.killed) >= 3, f"only {len(killer.killed)} kills landed in {elapsed:.1f} s: the run is too short"
    found.assert_clean()
    assert found.checkpoints >= POPULATION
    assert_consistent_lineage(result, STEPS)  # every exploit's source checkpoint exists and verifies
    # each death inside a member's code is charged to that member, never more often than we killed
    assert sum(m.failures for m in result.store.members("f")) <= len(killer.killed)
