"""The store conformance suite (poptrain.testing) over every store poptrain ships, and SQL-only checks."""

from __future__ import annotations

import time

import pytest

from poptrain.errors import StorageError
from poptrain.store import Event, open_store
from poptrain.testing import StoreSuite
from poptrain.testing.store_suite import make_experiment, scores, w


class TestStoreConformance(StoreSuite):
    """Memory, SQLite and PostgreSQL: the `storage` fixture (conftest.py) gives a fresh URL of each."""


def make(url: str, n: int = 3, held: bool = True):
    """Experiment 'e' of n members in a fresh store at `url` (see make_experiment)."""
    return make_experiment(open_store(url), n, held)


@pytest.mark.parametrize("old", [1, 2, 3])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_older_schema_is_upgraded_in_place_and_newer_is_refused(backend, old, tmp_path, request):
    from sqlalchemy import create_engine, inspect, text

    url = request.getfixturevalue("postgres").new_database() if backend == "postgresql" \
        else f"sqlite:///{tmp_path}/old.db"
    store = make(url)
    now = time.time()
    store.report("e", 0, w(0), 1, 0.5, {}, {"lr": 0.1}, now)
    store.record_exploit("e", Event(0, 1, 1, 1, {"lr": 0.1}, {"lr": 0.2}, now), w(0))
    store.close()
    raw = create_engine(url)
    with raw.begin() as c:  # what an older store looked like
        if backend == "sqlite":  # v3: event ids without AUTOINCREMENT (a deleted top id was given again)
            ddl = c.execute(text("SELECT sql FROM sqlite_master WHERE name = 'events'")).scalar()
            c.execute(text("ALTER TABLE events RENAME TO newer"))
            c.execute(text(ddl.replace(" AUTOINCREMENT", "")))
            c.execute(text("INSERT INTO events SELECT * FROM newer"))
            c.execute(text("DROP TABLE newer"))
        if old < 3:  # v2: no revisions
            c.execute(text("DROP INDEX ix_members_revision"))
            c.execute(text("ALTER TABLE members DROP COLUMN revision"))
        if old == 1:  # v1: nor an index of reports by step
            c.execute(text("DROP INDEX ix_reports_step"))
        c.execute(text(f"UPDATE poptrain_meta SET value = '{old}' WHERE key = 'schema_version'"))
    if old < 3:
        with pytest.raises(StorageError, match=f"schema version {old}, older.*poptrain resume"):
            open_store(url, create=False)  # readers never write, so never upgrade
    else:
        assert [e.id for e in open_store(url, create=False).events("e")] == [1]  # readers still read version 3
    with pytest.raises(StorageError, match="3 member.*leased by workers of an older poptrain"):
        open_store(url)  # make() leased every member: their (older) workers may still be writing
    with raw.begin() as c:
        c.execute(text("UPDATE members SET worker = NULL"))
    upgraded = open_store(url)
    assert scores(upgraded) == ([0], [0.5])
    assert [(e.id, e.new_hparams) for e in upgraded.events("e")] == [(1, {"lr": 0.2})]  # kept, with its id
    upgraded.claim_all("e", w(0), 60, time.time())
    upgraded.rollback("e", 0, w(0), None)  # deletes event 1, the newest
    upgraded.record_exploit("e", Event(0, 1, 2, 1, {"lr": 0.1}, {"lr": 0.3}, now + 1), w(0))
    assert [e.id for e in upgraded.events("e", after=1)] == [2]  # not id 1 again
    upgraded.close()
    assert "ix_reports_step" in {i["name"] for i in inspect(raw).get_indexes("reports")}
    assert "ix_events_member" in {i["name"] for i in inspect(raw).get_indexes("events")}
    assert "revision" in {col["name"] for col in inspect(raw).get_columns("members")}
    with raw.begin() as c:
        assert c.execute(text("SELECT value FROM poptrain_meta")).scalar() == "4"
        c.execute(text("UPDATE poptrain_meta SET value = '99' WHERE key = 'schema_version'"))
    raw.dispose()
    for create in (True, False):
        with pytest.raises(StorageError, match="schema version 99.*upgrade poptrain"):
            open_store(url, create=create)


def test_postgresql_scores_see_a_change_that_commits_after_a_newer_one(postgres):
    """A transaction that began first but commits last must not be missed by the incremental read."""
    import psycopg

    url = postgres.new_database()
    reader = make(url)
    dsn = postgres.dsn(url.rsplit("/", 1)[1])
    change = "UPDATE members SET step = 1, last_score = %s, revision = txid_current() WHERE id = %s"
    with psycopg.connect(dsn) as slow, psycopg.connect(dsn, autocommit=True) as fast:
        slow.execute(change, (0.9, 0))  # older transaction id, still open
        fast.execute(change, (0.2, 1))  # newer transaction id, committed
        assert scores(reader) == ([1], [0.2])
        slow.commit()
    assert scores(reader) == ([0, 1], [0.9, 0.2])


def test_postgresql_events_after_an_id_see_an_exploit_that_commits_after_a_newer_one(postgres):
    """Two workers' exploits at once: the one that took its id first but commits last is not skipped by a follower."""
    import threading

    from sqlalchemy import event

    url = postgres.new_database()
    slow, fast, reader = make(url), open_store(url), open_store(url, create=False, read_only=True)
    inserted, resume = threading.Event(), threading.Event()

    def pause_before_commit(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            inserted.set()
            resume.wait(30)

    event.listen(slow._writer, "after_cursor_execute", pause_before_commit)
    now = time.time()
    first = threading.Thread(target=slow.record_exploit, args=("e", Event(0, 1, 2, 1, {}, {"lr": 1.0}, now), w(0)))
    first.start()
    assert inserted.wait(30)
    second = threading.Thread(target=fast.record_exploit, args=("e", Event(1, 1, 2, 1, {}, {"lr": 2.0}, now), w(1)))
    second.start()
    second.join(1.0)  # without the ordering it commits now, with the id after the one still in flight
    seen = reader.events("e")  # a follower's read meanwhile
    resume.set()
    first.join(30)
    second.join(30)
    later = reader.events("e", after=seen[-1].id if seen else None)
    assert sorted(e.member for e in seen + later) == [0, 1]
    assert [e.id for e in reader.events("e")] == sorted(e.id for e in seen + later)
    for store in (slow, fast, reader):
        store.close()


OUTSIDE_STORE = '''
import uuid

import pytest

from poptrain.store.memory import MemoryStore
from poptrain.testing import StoreSuite

_stores = {}


class ForgetfulStore(MemoryStore):
    """A store written outside poptrain, with a defect: it forgets every member's recent scores."""

    def recent_scores(self, name, window, at_step=None, members=None):
        return {}


class TestMemoryOpenedDirectly(StoreSuite):
    @pytest.fixture
    def storage(self):
        return uuid.uuid4().hex

    def open(self, storage):
        return _stores.setdefault(storage, MemoryStore(f"memory://{storage}"))


class TestForgetfulStore(TestMemoryOpenedDirectly):
    def open(self, storage):
        return _stores.setdefault(storage, ForgetfulStore(f"memory://{storage}"))
'''


def test_a_store_written_elsewhere_runs_the_suite_and_its_defects_fail_it(tmp_path):
    """The suite imported by an outside test module: a sound store passes, a forgetful one fails."""
    import re
    import subprocess
    import sys

    (tmp_path / "test_outside_store.py").write_text(OUTSIDE_STORE)
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "test_outside_store.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    outcomes: dict[str, dict[str, str]] = {"TestMemoryOpenedDirectly": {}, "TestForgetfulStore": {}}
    for cls, test, outcome in re.findall(r"^test_outside_store.py::(\w+)::(\S+) (PASSED|FAILED)", done.stdout, re.M):
        outcomes[cls][test] = outcome
    sound, forgetful = outcomes["TestMemoryOpenedDirectly"], outcomes["TestForgetfulStore"]
    assert len(sound) > 20 and set(sound) == set(forgetful), done.stdout[-3000:]
    assert set(sound.values()) == {"PASSED"}
    assert forgetful["test_reports_versions_and_recent_scores"] == "FAILED"
    assert "PASSED" in forgetful.values()


def test_a_store_without_its_own_recent_reports_gets_the_same_from_the_default():
    """Store.recent_reports is not abstract: a store written before it reads the same rows through reports()."""
    from poptrain.store.base import Store
    from poptrain.store.memory import MemoryStore

    class Older(MemoryStore):
        recent_reports = Store.recent_reports

    for cls in (MemoryStore, Older):
        store = make_experiment(cls(f"memory://recent-{cls.__name__}"), n=3)
        now = time.time()
        for step in range(1, 5):
            store.report("e", 0, w(0), step, step / 10, {"acc": step}, {"lr": 0.1}, now)
        store.report("e", 1, w(1), 1, 0.7, {}, {"lr": 0.2}, now)
        store.record_failure("e", 2, w(2), "boom", max_failures=0)
        got = [(r.member, r.step, r.metrics) for r in store.recent_reports("e", 2)]
        assert got == [(0, 3, {"acc": 3}), (0, 4, {"acc": 4}), (1, 1, {})], cls
        assert [(r.member, r.step) for r in store.recent_reports("e", 1, at_step=2)] == [(0, 2)], cls
