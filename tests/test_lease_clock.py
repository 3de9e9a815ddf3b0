"""Leases end on the database's clock: a worker whose clock is an hour off neither steals a lease nor keeps one."""

from __future__ import annotations

import os
import time

import pytest

import poptrain
from poptrain.store import CheckpointRecord, open_store

TESTS = os.path.dirname(os.path.abspath(__file__))
HOUR, LEASE = 3600.0, 1.5


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres").new_database()
    return f"sqlite:///{tmp_path}/k.db"


@pytest.mark.parametrize("offset", [HOUR, -HOUR], ids=["an-hour-ahead", "an-hour-behind"])
def test_a_worker_with_a_clock_an_hour_off_neither_steals_nor_keeps_a_lease(url, offset, tmp_path, monkeypatch):
    poptrain.Experiment(name="k", trainable="trainables:Quadratic", space={"lr": poptrain.LogUniform(0.01, 0.3)},
                        metric="score", population=2, steps=4, storage=url, checkpoints=str(tmp_path / "ckpt"),
                        lease=LEASE, paths=[TESTS]).create()
    honest = poptrain.connect(url, "k", "honest")
    mine = honest.ask()
    assert mine.id == 0  # the least trained, lowest id first
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset)  # this process's clock, as the skewed worker sees it
    skewed = poptrain.connect(url, "k", "skewed")
    try:
        check(url, honest, mine, skewed, lambda: monkeypatch.setattr(time, "time", real), offset > 0)
    finally:
        monkeypatch.setattr(time, "time", real)
        skewed.close()
        honest.close()


def check(url: str, honest, mine, skewed, right_clock, ahead: bool) -> None:
    """The skewed worker takes and reports member 1 only; once it dies (ahead: renewing an hour late) its lease ends on time."""
    theirs = skewed.ask(wait=False)
    assert theirs is not None and theirs.id == 1  # member 0's lease is live on the database's clock
    skewed.tell(theirs, {"score": 0.5}, {"x": 0.0, "trained": 1})
    assert skewed.ask(wait=False).id == 1  # its own again, never the honest worker's
    skewed.store.add_checkpoint("k", CheckpointRecord(member=1, seq=0, step=1, key="k/m1.ckpt", checksum="x", hparams={},
                                                      last_ready=1, pending=False, created=time.time()), 0, 3,
                                time.time(), "skewed")
    pin = skewed.store.pin_checkpoint("k", 1, time.time() + LEASE)  # a copy's pin on its source, while it reads it
    right_clock()
    store = open_store(url)
    rows, now = store.members("k"), store.clock()
    assert abs(now - time.time()) < 5  # the database and this host agree: the offset alone was wrong
    assert [r.worker for r in rows] == ["honest", "skewed"]
    assert now < rows[1].lease_until <= now + LEASE + 0.5  # neither over at once nor an hour long
    assert now < pin.pinned_until <= now + LEASE + 0.5  # a pin too
    assert store.claim("k", "other", LEASE, time.time(), barrier=False) is None  # both leases live: nothing to take
    assert not isinstance(honest.tell(mine, {"score": 0.1}), poptrain.Released)  # it still holds its member
    assert [(r.member, r.step) for r in store.reports("k")] == [(0, 1), (1, 1)]
    if not ahead:  # behind, its renewals were never an hour long: nothing to wait for
        return
    skewed._heartbeat.stop()  # the skewed worker dies holding member 1
    started = time.monotonic()
    while (taken := store.claim("k", "other", LEASE, time.time(), barrier=False)) is None:
        assert time.monotonic() - started < LEASE + 3, "the dead worker's lease was kept past its end"
        time.sleep(0.05)
    assert taken.id == 1 and taken.step == 1
