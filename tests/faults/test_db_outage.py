"""The database goes away for a few seconds: stores retry with back-off, workers carry on, nothing is lost."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time

import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

import poptrain
from poptrain.engines import Local
from poptrain.store import MemberRecord, open_store
from poptrain.store.sql import _transient
from checks import assert_consistent_lineage
from faults import tally
from faults.helpers import Run, audit, experiment, steps_done, wait_until
from pg import Postgres

pytestmark = pytest.mark.slow

POPULATION, STEPS, OUTAGE = 6, 30, 3.0
RETRY_WARNING = "; retry "


@pytest.fixture(scope="module")
def server():
    """A PostgreSQL server of this module's own, so stopping it disturbs no other test."""
    pg = Postgres()
    yield pg
    pg.stop()


def test_workers_ride_out_a_postgres_restart(server, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.05")
    url = server.new_database()
    exp = experiment(url, population=POPULATION, steps=STEPS, checkpoints=str(tmp_path / "ckpt"))
    engine = Local(workers=3)
    run = Run(lambda: exp.run(engine=engine))
    total = POPULATION * STEPS
    wait_until(lambda: steps_done(url, "f") >= total // 3 or not run.alive(), "a third of the run")
    workers = set(engine.worker_pids())
    server.halt()
    try:
        time.sleep(OUTAGE)
        assert run.alive()
    finally:
        server.start()
    resumed_from = steps_done(url, "f")
    assert resumed_from < total - 2 * POPULATION, "the run ended during the outage: make it longer"
    wait_until(lambda: steps_done(url, "f") >= resumed_from + POPULATION, "training to go on after the outage")
    # the same worker processes carried on: none died of the outage and was replaced
    assert len(workers) == 3 and set(engine.worker_pids()) == workers
    result = run.finish(120)
    err = capfd.readouterr().err
    found = audit(result.store, "f", STEPS, result.spec["checkpoints"])
    tally.add(outages=1, retries=err.count(RETRY_WARNING), **found.tally())
    found.assert_clean()
    assert sum(m.failures for m in result.store.members("f")) == 0
    assert_consistent_lineage(result, STEPS)
    assert err.count(RETRY_WARNING) >= 3  # the workers met the outage and retried (one warning per retry)


def test_a_longer_outage_ends_in_a_clear_error_and_the_store_recovers(server, caplog):
    url = server.new_database()
    store = open_store(url)
    store.create_experiment("e", {"steps": 1}, [MemberRecord(id=0, seed=0, hparams={}, initial_hparams={})])
    store.retry_for = 1.5
    server.halt()
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="poptrain"), \
                pytest.raises(poptrain.StorageError, match=f"127.0.0.1:{server.port}/.* is unreachable") as err:
            store.members("e")
        waited = time.monotonic() - started
    finally:
        server.start()
    retries = [r for r in caplog.records if RETRY_WARNING in r.getMessage()]
    tally.add(retries=len(retries))
    assert 1.5 <= waited < 6
    assert len(retries) >= 3 and "members failed" in retries[0].getMessage()
    assert "failed" in str(err.value) and "members" in str(err.value)
    assert [m.id for m in store.members("e")] == [0]  # the same store object works again once the server is back


def test_a_worker_that_starts_during_an_outage_waits_for_the_database(server):
    """A replacement worker (or a launcher's task) opening the store while PostgreSQL restarts."""
    url = server.new_database()
    open_store(url).close()
    server.halt()
    restart = threading.Timer(2.0, server.start)
    try:
        with pytest.raises(poptrain.StorageError, match=f"cannot reach storage .*127.0.0.1:{server.port}"):
            open_store(url, create=False)  # a reader says so at once
        restart.start()
        started = time.monotonic()
        store = open_store(url, create=False, wait=True)
        assert time.monotonic() - started >= 1.0
        assert store.experiments() == []
    finally:
        if restart.ident is not None:
            restart.join(30)
        if server.server.poll() is not None:
            server.start()
    tally.add(outages=1)


def test_a_locked_sqlite_file_is_retried_until_the_lock_goes(tmp_path, caplog):
    path = tmp_path / "l.db"
    store = open_store(f"sqlite:///{path}")
    store.create_experiment("e", {"steps": 1}, [MemberRecord(id=0, seed=0, hparams={}, initial_hparams={})])
    with store._writer.connect() as c:  # a short busy timeout, so SQLite reports 'database is locked' at once
        c.exec_driver_sql("PRAGMA busy_timeout=20")
    store.retry_for = 20.0  # fail soon if retries do not happen
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(1.0, holder.execute, args=("COMMIT",))
    release.start()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="poptrain"):
            store.release_all("e")
    finally:
        release.join(5)
        holder.close()
    waited = time.monotonic() - started
    retries = [r for r in caplog.records if "database is locked" in r.getMessage()]
    tally.add(retries=len(retries))
    assert retries and RETRY_WARNING in retries[0].getMessage()
    assert 1.0 <= waited < 5  # it went through once the lock was gone, not after some unrelated timeout
    assert store.members("e")[0].worker is None


def _wrapped(error: Exception, kind: type = OperationalError) -> Exception:
    return kind("SELECT 1", {}, error)


@pytest.mark.parametrize("error, transient", [
    (_wrapped(sqlite3.OperationalError("database is locked")), True),
    (_wrapped(sqlite3.OperationalError("no such table: members")), False),
    (_wrapped(sqlite3.IntegrityError("UNIQUE constraint failed"), ProgrammingError), False),
])
def test_only_transient_errors_are_retried(error, transient):
    assert _transient(error) is transient


def test_postgres_errors_are_told_apart(server):
    import psycopg

    with psycopg.connect(server.dsn("postgres")) as c:
        with pytest.raises(psycopg.errors.UndefinedTable) as missing:
            c.execute("SELECT * FROM no_such_table")
    with psycopg.connect(server.dsn("postgres"), options="-c statement_timeout=10") as c:
        with pytest.raises(psycopg.errors.QueryCanceled) as cancelled:
            c.execute("SELECT pg_sleep(1)")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"host=127.0.0.1 port={closed} user=postgres dbname=postgres connect_timeout=2")
    assert not _transient(_wrapped(missing.value, ProgrammingError))
    assert not _transient(_wrapped(cancelled.value))  # a real error of the statement, not of the connection
    assert _transient(_wrapped(refused.value))
