"""Concurrency stress: 8 processes × 2,000 reports each into one store (SQLite and PostgreSQL); every row arrives."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter

import pytest

from poptrain.store import MemberRecord, open_store
from faults import tally

pytestmark = pytest.mark.slow

WRITERS, REPORTS = 8, 2000


def _write(url: str, member: int, go: "mp.synchronize.Event") -> None:
    """One worker's traffic: a report per step, renewing its lease and re-claiming its member now and then."""
    store = open_store(url)
    go.wait(60)
    for step in range(1, REPORTS + 1):
        store.report("e", member, f"w{member}", step, step / REPORTS, {"s": step}, {"lr": 0.1}, time.time())
        if step % 100 == 0:
            store.renew("e", f"w{member}", 60, time.time())
            assert store.claim("e", f"w{member}", 60, time.time(), barrier=False).id == member


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_eight_writers_two_thousand_reports_each(tmp_path, request, backend):
    url = f"sqlite:///{tmp_path}/s.db" if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    store = open_store(url)
    store.create_experiment("e", {"steps": REPORTS, "mode": "max"},
                            [MemberRecord(id=i, seed=i, hparams={}, initial_hparams={}) for i in range(WRITERS)])
    for i in range(WRITERS):  # writer w{i} holds member i
        assert store.claim("e", f"w{i}", 60, time.time(), barrier=False).id == i
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_write, args=(url, i, go)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    go.set()  # all at once, once every process has started
    for p in procs:
        p.join(180)
    exitcodes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    rows = Counter((r.member, r.step) for r in store.reports("e"))
    expected = {(i, s) for i in range(WRITERS) for s in range(1, REPORTS + 1)}
    members = store.members("e")
    tally.add(rows=len(expected), lost=len(expected - set(rows)),
              duplicated=sum(n - 1 for n in rows.values()) + len(set(rows) - expected))
    assert exitcodes == [0] * WRITERS
    assert set(rows) == expected and set(rows.values()) == {1}
    assert all(m.step == REPORTS and m.version == REPORTS and m.worker == f"w{m.id}" for m in members)
    assert all(m.last_score == 1.0 for m in members)
