"""Several processes write into one store at once (SQLite and PostgreSQL): nothing is lost, no lock error."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from poptrain.store import MemberRecord, open_store

WRITERS, REPORTS = 4, 250


def _write(url: str, member: int) -> None:
    store = open_store(url)
    for step in range(1, REPORTS + 1):
        store.report("e", member, f"w{member}", step, step * 1.0, {"s": step}, {"lr": 0.1}, time.time())
        if step % 25 == 0:
            store.renew("e", f"w{member}", 30, time.time())
            assert store.claim("e", f"w{member}", 30, time.time(), barrier=False).id == member


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_writers_lose_nothing(tmp_path, request, backend):
    url = f"sqlite:///{tmp_path}/c.db" if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    store = open_store(url)
    store.create_experiment("e", {"steps": REPORTS, "mode": "max"},
                            [MemberRecord(id=i, seed=i, hparams={}, initial_hparams={}) for i in range(WRITERS)])
    for i in range(WRITERS):  # worker w{i} holds member i
        assert store.claim("e", f"w{i}", 30, time.time(), barrier=False).id == i
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(url, i)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    assert len(store.reports("e")) == WRITERS * REPORTS
    assert all(m.step == REPORTS and m.version == REPORTS for m in store.members("e"))
