"""Every connection to PostgreSQL and to S3 is cut, now and then, for a second or two: nothing is lost or written twice."""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

import poptrain
from poptrain.engines import Local
from poptrain.store import open_store

from checks import assert_consistent_lineage
from faults import tally
from faults.helpers import Run, audit, experiment, steps_done, trained_steps, wait_until
from faults.proxy import CuttingProxy, Cutter
from trainables import Timed

pytestmark = pytest.mark.slow

POPULATION, STEPS, WORKERS = 6, 12, 3
CUTS = 4  # armed of each proxy, one at a time; each fires at its next COMMIT (PostgreSQL) or PUT (S3)
RETRY_WARNING = "; retry "


def overlaps(log: Path) -> list[tuple[int, int, int]]:
    """(member seed, step, step) of intervals of one member trained by two processes at once."""
    by_member: dict[int, list[tuple[float, float, int, int]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        seed, step, pid, start, end = line.split()
        by_member[int(seed)].append((float(start), float(end), int(pid), int(step)))
    found = []
    for seed, intervals in by_member.items():
        intervals.sort()
        for (_, end, pid, step), (start, _, other, later) in zip(intervals, intervals[1:]):
            if other != pid and start < end:
                found.append((seed, step, later))
    return found


def test_cut_connections_to_postgres_and_s3_lose_nothing(postgres, s3, tmp_path, monkeypatch, capfd):
    """3 worker processes train 6 members; their connections (and the runner's) go through proxies that cut them."""
    direct = postgres.new_database()
    database = CuttingProxy(postgres.port, at=b"COMMIT")  # every cut drops a commit's answer
    objects = CuttingProxy(int(os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]), at=b"PUT ")  # mid-upload
    url = direct.replace(f":{postgres.port}/", f":{database.port}/")
    checkpoints = f"{s3}/cuts-{uuid.uuid4().hex[:8]}"
    intervals = tmp_path / "intervals"
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.02")
    monkeypatch.setenv("POPTRAIN_TEST_INTERVALS", str(intervals))
    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(tmp_path / "steps"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{objects.port}")  # the workers' S3 goes through it too
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    exp = experiment(url, trainable=Timed, population=POPULATION, steps=STEPS, checkpoints=checkpoints)
    engine = Local(workers=WORKERS)
    cutter = Cutter([database, objects], CUTS, seed=23, gap=(0.1, 0.4), outage=(0.3, 1.0))
    run = Run(lambda: exp.run(engine=engine))
    try:
        wait_until(lambda: steps_done(direct, "f") > 0 or not run.alive(), "the first report", timeout=60)
        cutter.start()
        run.finish(120)
    finally:
        cutter.stop.set()
        cutter.join(5)
        database.close()
        objects.close()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{objects.target}")
        s3fs.S3FileSystem.clear_instance_cache()
    store = open_store(direct, create=False)
    found = audit(store, "f", STEPS, checkpoints)  # every recorded checkpoint is loaded and its checksum checked
    retries = capfd.readouterr().err.count(RETRY_WARNING)
    tally.add(connections_cut=database.connections_cut + objects.connections_cut, retries=retries, **found.tally())
    found.assert_clean()
    assert database.cuts >= 2 and objects.cuts >= 2, f"only {database.cuts} + {objects.cuts} cuts landed: make the run longer"
    assert retries >= 2  # the workers met the cuts and retried (one warning per retry)
    keys = [c.key for m in store.members("f") for c in store.checkpoints("f", m.id)]
    assert len(keys) == len(set(keys))  # a checkpoint whose record's commit went unheard is recorded once
    assert overlaps(intervals) == []  # no member was trained by two processes at once
    # every interval trained once: no repeated write made a member's version jump and its worker roll it back
    assert trained_steps(tmp_path / "steps", store, "f") == {m: list(range(1, STEPS + 1)) for m in range(POPULATION)}
    assert sum(m.failures for m in store.members("f")) == 0  # a cut is the network's fault, never a member's
    assert_consistent_lineage(poptrain.load(direct, "f"), STEPS)
