"""The population store on SQL (SQLAlchemy Core): SQLite by default, any SQLAlchemy URL works."""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Collection, Iterator, Mapping, NoReturn, Sequence, TypeVar
from urllib.parse import quote

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking is all there is
    fcntl = None  # type: ignore[assignment]

import numpy as np
from sqlalchemy import and_, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.pool import QueuePool, StaticPool

from ..errors import StorageError
from ..redact import scrub, shown
from ..records import ACTIVE, DONE, FAILED
from . import queries as q
from . import schema as t
from .scoreboard import Scoreboard
from .base import CheckpointRecord, Event, LeaseLost, MemberRecord, Progress, Report, Store, clean_score, summarize


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


log = logging.getLogger("poptrain")
_F = TypeVar("_F", bound=Callable[..., Any])
# PostgreSQL SQLSTATEs worth retrying: the server shutting down or starting up, too many
# connections, a serialization failure or deadlock (class 08, connection exceptions, also counts)
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})


def _transient(exc: BaseException) -> bool:
    """Whether a database error is worth retrying: a lost or refused connection, a busy SQLite file."""
    if isinstance(exc, DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    if type(orig).__module__ == "sqlite3":  # other SQLite OperationalErrors ('no such table') are real
        return any(word in str(orig).lower() for word in ("database is locked", "database is busy",
                                                          "database table is locked"))
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES
    # libpq reports a refused or dropped connection without a SQLSTATE
    return type(orig).__module__.split(".")[0] in ("psycopg", "psycopg2")


def _retrying(method: _F) -> _F:
    """Re-run a whole store method on a transient database error, backing off exponentially.

    Each method is one transaction (or a few, each safe to repeat), so a retry never resumes a
    half-done one. After `retry_for` seconds of failures it raises StorageError naming the URL.
    A connection lost during COMMIT leaves it unknown whether the commit happened; the retry
    then repeats it, which every method tolerates: a report (known by its member, step and
    time), an exploit event and a checkpoint (by its key) are recorded once, a finish is done once.
    """
    @functools.wraps(method)
    def retried(self: "SQLStore", *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.retry_for
        delay, attempt = 0.05, 0
        while True:
            try:
                return method(self, *args, **kwargs)
            except (DBAPIError, DisconnectionError) as exc:
                if not _transient(exc):
                    raise
                attempt += 1
                reason = scrub(" ".join(str(getattr(exc, "orig", None) or exc).split()))
                where = shown(self.url)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StorageError(
                        f"storage {where} is unreachable: {method.__name__} failed {attempt} times over "
                        f"{self.retry_for:g} s (last error: {reason})") from exc
                wait = min(delay * random.uniform(0.5, 1.0), left)
                log.warning("storage %s: %s failed (%s); retry %d in %.2f s", where, method.__name__, reason,
                            attempt, wait)
                time.sleep(wait)
                delay = min(2 * delay, 2.0)
    return retried  # type: ignore[return-value]


def _retry_public_methods(cls: type) -> type:
    """Wrap every public method of a store class in `_retrying` (so new methods get it too)."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and name != "close" and callable(value):
            setattr(cls, name, _retrying(value))
    return cls


def _member(row: Any) -> MemberRecord:
    return MemberRecord(
        id=row.id, seed=row.seed, hparams=json.loads(row.hparams),
        initial_hparams=json.loads(row.initial_hparams), step=row.step, last_ready=row.last_ready,
        pending=bool(row.pending), status=row.status, worker=row.worker, lease_until=row.lease_until,
        version=row.version, ckpt_version=row.ckpt_version, last_score=row.last_score,
        failures=row.failures, error=row.error)


def _report(row: Any, decoded: dict[str, Any] | None = None) -> Report:
    """A report row as a Report; `decoded` caches hyperparameter texts (a member's change only at an exploit)."""
    if decoded is None:
        hparams = json.loads(row.hparams)
    else:
        hparams = decoded[row.hparams] if row.hparams in decoded else decoded.setdefault(row.hparams,
                                                                                         json.loads(row.hparams))
    return Report(member=row.member, step=row.step, score=row.score, metrics=json.loads(row.metrics),
                  hparams=hparams, time=row.time)


def _ours(row: Any, worker: str) -> bool:
    """Whether `worker` already holds this member row (read with the database's time) with a live lease."""
    return row.worker == worker and row.lease_until >= row.db_now


def _checkpoint(row: Any) -> CheckpointRecord:
    return CheckpointRecord(
        member=row.member, seq=row.seq, step=row.step, key=row.key, checksum=row.checksum,
        hparams=json.loads(row.hparams), last_ready=row.last_ready, pending=bool(row.pending),
        created=row.created, pinned_until=row.pinned_until)


def _read_only_connector(path: str) -> Callable[[], sqlite3.Connection]:
    """Connections that open a SQLite file read-only (mode=ro), so a reader can never write or change its journal mode.

    A WAL database in a folder the reader cannot write (its -shm file cannot be created) opens
    only as immutable; that is the fallback when the read-only open is refused for that reason.
    """
    uri = f"file:{quote(path)}?mode=ro"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=60)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opening is lazy: read to find out
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if not any(word in str(exc).lower() for word in ("readonly", "read-only", "unable to open")):
                raise
        return sqlite3.connect(f"{uri}&immutable=1", uri=True, check_same_thread=False, timeout=60)

    return connect


def _sqlite_engine(url: str, immediate: bool, read_only: bool = False) -> Engine:
    """A SQLite engine whose write transactions take the write lock up front (no upgrade deadlock).

    `read_only` (readers: status, report, dashboard, `poptrain.load`) opens the file with
    mode=ro and sets no pragma that persists, so reading leaves the file as it was.
    """
    parsed = make_url(url)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:")
    if not in_memory:
        folder = os.path.dirname(os.path.abspath(database))
        if not os.path.isdir(folder):
            raise StorageError(
                f"storage directory {folder} does not exist: create it (mkdir -p {folder}) "
                f"or pass another storage URL")
    if read_only and not in_memory:
        engine = create_engine("sqlite://", creator=_read_only_connector(os.path.abspath(database)),
                               poolclass=QueuePool)
    else:
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60},
            **({"poolclass": StaticPool} if in_memory else {}))

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's 'begin' event emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        if not in_memory and not read_only:  # the journal mode persists in the file: only writers set it
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def _initialising(url: str | None) -> Iterator[None]:
    """Serialise first opens of one SQLite file across processes.

    Until a new file is in WAL mode, two connections creating it can deadlock (each holds a lock
    the other needs) until the busy timeout; a lock file beside the database prevents that.
    """
    database = make_url(url).database if url else None
    if not database or database == ":memory:" or fcntl is None:
        yield
        return
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@_retry_public_methods
class SQLStore(Store):
    """A store on a SQL database; several processes (or hosts, on PostgreSQL) share one population.

    A public method that meets a transient database error (connection lost or refused, SQLite
    busy) is re-run whole with exponential back-off for up to `retry_for` seconds.
    """

    retry_for: float = 60.0

    def __init__(self, url: str, create: bool = True, wait: bool = False, read_only: bool = False) -> None:
        self.url = url
        create = create and not read_only
        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError as exc:
            raise StorageError(f"storage URL {shown(url)!r} is not valid: {scrub(str(exc))}") from None
        if backend == "sqlite":
            if read_only:  # a reader has no writer: nothing it calls can change the file
                self._writer = self._reader = _sqlite_engine(url, immediate=False, read_only=True)
            else:
                self._writer = _sqlite_engine(url, immediate=True)
                self._reader = self._writer if make_url(url).database in (None, "", ":memory:") \
                    else _sqlite_engine(url, immediate=False)
        else:
            try:
                # a reader's transactions are read-only on PostgreSQL too (the server refuses any write)
                readonly = {"execution_options": {"postgresql_readonly": True}} if read_only and backend == "postgresql" \
                    else {}
                self._writer = self._reader = create_engine(url, pool_pre_ping=True, **readonly)
                if backend == "postgresql" and not read_only:
                    # reads without BEGIN and COMMIT: two round trips fewer each (a decision's standings: 5 become 3);
                    # under READ COMMITTED each statement takes its own snapshot in a transaction too
                    self._reader = self._writer.execution_options(isolation_level="AUTOCOMMIT")
            except ImportError as exc:
                raise StorageError(f"storage {shown(url)!r} needs a database driver that is not installed ({exc.name}): "
                                   f"pip install it (PostgreSQL: psycopg)") from None
        self._ids: dict[str, int] = {}
        self._boards: dict[str, Scoreboard] = {}
        name = self._writer.dialect.name
        self._kind = name if name in ("postgresql", "sqlite") else "other"
        opening = _retrying(SQLStore._open) if wait else SQLStore._open
        try:
            with _initialising(url if backend == "sqlite" and create else None):
                opening(self, create)
        except (DBAPIError, DisconnectionError) as exc:
            where = shown(url)
            reason = scrub(" ".join(str(getattr(exc, "orig", None) or exc).split()))
            raise StorageError(f"cannot reach storage {where}: {reason}") from None

    # plumbing
    def _open(self, create: bool) -> None:
        """Create (writers) or check (readers) the schema; `wait` retries this while the database is unreachable."""
        if create:
            self._create_schema()
        else:
            self._check_schema()

    def _create_schema(self) -> None:
        try:
            with self._writer.begin() as c:
                if c.dialect.name == "postgresql":  # first opens from several hosts: one creates, the others wait
                    c.exec_driver_sql("SELECT pg_advisory_xact_lock(7355608)")
                t.metadata.create_all(c)
                found = c.execute(select(t.meta.c.value).where(t.meta.c.key == "schema_version")).scalar()
                if found is None:
                    c.execute(insert(t.meta).values(key="schema_version", value=str(t.SCHEMA_VERSION)))
                elif int(found) > t.SCHEMA_VERSION:
                    raise StorageError(
                        f"store {shown(self.url)} has schema version {found}, newer than this poptrain "
                        f"understands ({t.SCHEMA_VERSION}): upgrade poptrain")
                elif int(found) < t.SCHEMA_VERSION:
                    m = t.members.c
                    leased = c.execute(select(func.count()).select_from(t.members)
                                       .where(m.worker.is_not(None), m.lease_until > self._now(c))).scalar()
                    if leased:  # their older code would keep writing rows the new schema reads differently
                        raise StorageError(
                            f"store {shown(self.url)} (schema version {found}) is being trained: {leased} member(s) are "
                            f"leased by workers of an older poptrain. Stop them (or wait for their leases to "
                            f"expire), then open it again to upgrade it to version {t.SCHEMA_VERSION}")
                    t.upgrade(c, int(found))
                    c.execute(update(t.meta).where(t.meta.c.key == "schema_version")
                              .values(value=str(t.SCHEMA_VERSION)))
        except OperationalError as exc:
            if _transient(exc):
                raise
            raise StorageError(f"cannot open storage {shown(self.url)}: {scrub(str(exc.orig))}") from None

    def _check_schema(self) -> None:
        """For readers: the store must already hold poptrain's tables, of a version this code reads."""
        try:
            with self._read() as c:
                found = c.execute(select(t.meta.c.value).where(t.meta.c.key == "schema_version")).scalar()
        except OperationalError as exc:
            if _transient(exc):
                raise
            raise StorageError(f"{shown(self.url)} is not a poptrain store (it has no poptrain tables)") from None
        if found is None or int(found) > t.SCHEMA_VERSION:
            raise StorageError(f"{shown(self.url)} holds schema version {found}, which this poptrain "
                               f"({t.SCHEMA_VERSION}) cannot read: upgrade poptrain")
        if int(found) < t.OLDEST_READABLE:
            raise StorageError(f"{shown(self.url)} holds schema version {found}, older than this poptrain reads: "
                               f"open it once for writing (poptrain resume) to upgrade it")

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._writer.begin() as c:
            yield c

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.begin() as c:
            yield c

    def _now(self, c: Connection) -> float:
        """The database's time, which every lease is measured on (a dialect without a known query: this host's)."""
        return time.time() if self._kind == "other" else float(c.execute(q.clock[self._kind]).scalar_one())

    def clock(self) -> float:
        with self._read() as c:
            return self._now(c)

    def _eid(self, c: Connection, name: str) -> int:
        if name not in self._ids:
            found = c.execute(select(t.experiments.c.id).where(t.experiments.c.name == name)).scalar()
            if found is None:
                known = c.execute(select(t.experiments.c.name).order_by(t.experiments.c.name)).scalars().all()
                raise StorageError(
                    f"no experiment {name!r} in {shown(self.url)}"
                    + (f" (it holds: {', '.join(known)})" if known else " (it holds no experiments)"))
            self._ids[name] = found
        return self._ids[name]

    @staticmethod
    def _where(eid: int, member: int) -> Any:
        return and_(t.members.c.experiment_id == eid, t.members.c.id == member)

    def close(self) -> None:
        self._writer.dispose()
        self._reader.dispose()

    # experiments
    def create_experiment(self, name: str, spec: dict[str, Any], members: list[MemberRecord]) -> None:
        with self._tx() as c:
            if c.execute(select(t.experiments.c.id).where(t.experiments.c.name == name)).first():
                raise StorageError(f"experiment {name!r} already exists in {shown(self.url)}")
            eid = c.execute(insert(t.experiments).values(name=name, spec=_dumps(spec), created=time.time())
                            ).inserted_primary_key[0]
            c.execute(insert(t.members), [
                dict(experiment_id=eid, id=m.id, seed=m.seed, hparams=_dumps(m.hparams),
                     initial_hparams=_dumps(m.initial_hparams), step=0, last_ready=0, pending=False,
                     status=ACTIVE, worker=None, lease_until=0.0, version=0, ckpt_version=0,
                     failures=0) for m in members])

    def get_spec(self, name: str) -> dict[str, Any]:
        with self._read() as c:
            eid = self._eid(c, name)
            stored = c.execute(select(t.experiments.c.spec).where(t.experiments.c.id == eid)).scalar_one()
        try:
            spec = json.loads(stored)
        except ValueError as exc:  # a row someone edited by hand, or a truncated write
            raise StorageError(f"experiment {name!r} in {shown(self.url)}: its stored spec is not readable JSON ({exc})") from None
        if not isinstance(spec, dict):
            raise StorageError(f"experiment {name!r} in {shown(self.url)}: its stored spec is not a table of fields")
        return spec

    def experiments(self) -> list[str]:
        with self._read() as c:
            return list(c.execute(select(t.experiments.c.name).order_by(t.experiments.c.id)).scalars())

    # members
    def members(self, name: str) -> list[MemberRecord]:
        with self._read() as c:
            eid = self._eid(c, name)
            rows = c.execute(select(t.members).where(t.members.c.experiment_id == eid).order_by(t.members.c.id))
            return [_member(r) for r in rows]

    def member(self, name: str, member: int) -> MemberRecord:
        with self._read() as c:
            return _member(c.execute(q.member, {"eid": self._eid(c, name), "mid": member}).one())

    def claim(self, name: str, worker: str, lease: float, now: float, barrier: bool,
              take_new: bool = True) -> MemberRecord | None:
        if self._kind == "postgresql":
            return self._claim_skip_locked(name, worker, lease, now, barrier, take_new)
        for _ in range(16):  # SQLite: read, then compare-and-set; a lost race reads again
            with self._read() as c:
                params = {"eid": self._eid(c, name), "wid": worker, "now": time.time()}  # `now`: only where no clock query
                row = self._most_due(c, params, barrier, take_new, locked=False)
            if row is None:
                return None
            if _ours(row, worker):
                return _member(row)  # no write: the heartbeat keeps the lease
            with self._tx() as c:
                taken = self._take(c, params, row.id, lease)
            if taken is not None:
                return taken
        return None  # lost every race this round; the caller polls again

    def _take(self, c: Connection, params: dict[str, Any], member: int, lease: float) -> MemberRecord | None:
        """Lease `member` to the claimant if it is still free (compare-and-set); None if another got it first."""
        if not c.execute(q.take[self._kind], {**params, "mid": member, "claimant": params["wid"],
                                              "lease": lease}).rowcount:
            return None
        return _member(c.execute(q.member, {"eid": params["eid"], "mid": member}).one())

    def _most_due(self, c: Connection, params: dict[str, Any], barrier: bool, take_new: bool, locked: bool) -> Any:
        """The member a claim should take (least trained first, past the barrier in synchronous mode), with `db_now`."""
        if barrier:
            params = {**params, "lowest": c.execute(q.lowest_active_step, params).scalar() or 0}
        return c.execute((q.LOCKED if locked else q.DUE[self._kind])[(barrier, not take_new)], params).first()

    def _claim_skip_locked(self, name: str, worker: str, lease: float, now: float, barrier: bool,
                           take_new: bool) -> MemberRecord | None:
        """Lock the most due member no other claim is looking at (FOR UPDATE SKIP LOCKED) and lease it.

        Concurrent workers each get a different row at once instead of racing for the same one.
        """
        with self._tx() as c:
            params = {"eid": self._eid(c, name), "wid": worker}
            row = self._most_due(c, params, barrier, take_new, locked=True)
            if row is None:
                return None
            if _ours(row, worker):
                return _member(row)
            return self._take(c, params, row.id, lease)  # the row is locked: the compare-and-set cannot lose

    def claim_all(self, name: str, worker: str, lease: float, now: float) -> list[MemberRecord]:
        m = t.members.c
        with self._tx() as c:
            eid, now = self._eid(c, name), self._now(c)
            c.execute(update(t.members).where(m.experiment_id == eid, m.status == ACTIVE,
                                              or_(m.worker.is_(None), m.worker == worker, m.lease_until < now))
                      .values(worker=worker, lease_until=now + lease))
            rows = c.execute(select(t.members).where(m.experiment_id == eid, m.worker == worker).order_by(m.id))
            return [_member(r) for r in rows]

    def renew(self, name: str, worker: str, lease: float, now: float) -> None:
        with self._tx() as c:
            c.execute(q.renew[self._kind], {"eid": self._eid(c, name), "wid": worker, "lease": lease, "now": time.time()})

    def release(self, name: str, member: int, worker: str) -> None:
        with self._tx() as c:
            c.execute(q.release, {"eid": self._eid(c, name), "mid": member, "wid": worker})

    def expire_worker(self, name: str, worker: str) -> int:
        with self._tx() as c:
            eid = self._eid(c, name)
            return c.execute(update(t.members).where(t.members.c.experiment_id == eid, t.members.c.worker == worker)
                             .values(lease_until=0.0)).rowcount

    def hold_run(self, name: str, runner: str, lease: float, now: float, force: bool = False) -> str | None:
        # A key of the meta table per experiment, taken by compare-and-set on its value: two runs
        # started at the same instant cannot both see it free (no schema change needed).
        for _ in range(16):
            try:
                with self._tx() as c:
                    key, now = f"run:{self._eid(c, name)}", self._now(c)
                    mine = json.dumps({"runner": runner, "until": now + lease})
                    found = c.execute(select(t.meta.c.value).where(t.meta.c.key == key)).scalar()
                    if found is None:
                        c.execute(insert(t.meta).values(key=key, value=mine))
                        return None
                    held = json.loads(found)
                    if held["runner"] != runner and held["until"] >= now and not force:
                        return str(held["runner"])
                    if c.execute(update(t.meta).where(t.meta.c.key == key, t.meta.c.value == found)
                                 .values(value=mine)).rowcount:
                        return None
            except IntegrityError:  # another run inserted the key first: read it again
                continue
        raise StorageError(f"storage {shown(self.url)}: could not take the run of {name!r} (too many concurrent runs)")

    def release_run(self, name: str, runner: str) -> None:
        with self._tx() as c:
            key = f"run:{self._eid(c, name)}"
            found = c.execute(select(t.meta.c.value).where(t.meta.c.key == key)).scalar()
            if found is not None and json.loads(found)["runner"] == runner:
                c.execute(delete(t.meta).where(t.meta.c.key == key, t.meta.c.value == found))

    def release_all(self, name: str) -> None:
        with self._tx() as c:
            eid = self._eid(c, name)
            c.execute(update(t.members).where(t.members.c.experiment_id == eid).values(worker=None, lease_until=0.0))

    def _held(self, c: Connection, eid: int, member: int, holder: str, **values: Any) -> None:
        """Update a member held by `holder`; LeaseLost (rolling back the transaction) if it is not."""
        if not c.execute(update(t.members).where(self._where(eid, member), t.members.c.worker == holder)
                         .values(**values)).rowcount:
            raise LeaseLost(f"member {member} is no longer held by worker {holder}")

    def report(self, name: str, member: int, worker: str, step: int, score: float | None,
               metrics: dict[str, Any], hparams: dict[str, Any], now: float) -> None:
        score = clean_score(score)
        with self._tx() as c:
            keys = {"eid": self._eid(c, name), "mid": member, "at_step": step}
            if not c.execute(q.advance[self._kind], {**keys, "wid": worker, "score": score, "at": now,
                                                     "trained_with": _dumps(hparams)}).rowcount:
                if self._repeated(c, keys["eid"], [member], step, now):
                    return
                raise LeaseLost(f"member {member} is no longer held by worker {worker}")
            c.execute(q.drop_report, keys)
            c.execute(q.add_report, {"experiment_id": keys["eid"], "member": member, "step": step, "score": score,
                                     "metrics": _dumps(metrics), "hparams": _dumps(hparams), "time": now})

    def report_many(self, name: str, worker: str, step: int, rows: list[tuple[int, float | None, dict[str, Any], Any]],
                    now: float) -> None:
        with self._tx() as c:
            eid = self._eid(c, name)
            if not rows:
                return
            keys: list[dict[str, Any]] = []
            advances: list[dict[str, Any]] = []
            reports: dict[int, dict[str, Any]] = {}  # a member given twice keeps its last row, as report() twice would
            for member, score, metrics, hparams in rows:
                score, trained_with = clean_score(score), _dumps(hparams)
                key = {"eid": eid, "mid": member, "at_step": step}
                keys.append(key)
                advances.append({**key, "wid": worker, "score": score, "trained_with": trained_with, "at": now})
                reports[member] = {"experiment_id": eid, "member": member, "step": step, "score": score,
                                   "metrics": _dumps(metrics), "hparams": trained_with, "time": now}
            # one statement each, run with every row's parameters; rowcount sums over them (sqlite3, psycopg)
            if c.execute(q.advance[self._kind], advances).rowcount < len(rows):
                if self._repeated(c, eid, [member for member, *_ in rows], step, now):
                    return
                self._lease_lost(c, eid, [member for member, *_ in rows], worker)
            c.execute(q.drop_report, keys)
            c.execute(q.add_report, list(reports.values()))

    @staticmethod
    def _repeated(c: Connection, eid: int, members: list[int], step: int, now: float) -> bool:
        """Whether these reports are there already from this very call: a retry after its commit's answer was lost."""
        found = c.execute(q.reported, {"eid": eid, "mids": members, "at_step": step, "at": now}).scalars().all()
        return len(set(found)) == len(set(members))

    @staticmethod
    def _lease_lost(c: Connection, eid: int, members: list[int], worker: str) -> NoReturn:
        """Raise LeaseLost naming the first of `members` that `worker` does not hold."""
        m = t.members.c
        held = set(c.execute(select(m.id).where(m.experiment_id == eid, m.id.in_(members), m.worker == worker))
                   .scalars())
        lost = next((member for member in members if member not in held), members[0])
        raise LeaseLost(f"member {lost} is no longer held by worker {worker}")

    def record_exploit(self, name: str, ev: Event, worker: str) -> None:
        self.record_exploits(name, [ev], worker)

    def record_exploits(self, name: str, events: list[Event], worker: str) -> None:
        with self._tx() as c:
            eid = self._eid(c, name)
            if self._kind != "sqlite":  # SQLite's writers already take turns
                c.execute(q.lock_experiment, {"eid": eid})
            # a retry after a commit whose acknowledgement was lost finds its events already there
            found = c.execute(q.events_at, {"eid": eid, "mids": sorted({ev.member for ev in events}),
                                            "steps": sorted({ev.step for ev in events})})
            seen = {tuple(row) for row in found}
            new: list[Event] = []
            for ev in events:
                if (ev.member, ev.step, ev.time) not in seen:
                    seen.add((ev.member, ev.step, ev.time))
                    new.append(ev)
            if not new:
                return
            changes = [{"eid": eid, "mid": ev.member, "wid": worker, "new_hparams": _dumps(ev.new_hparams)} for ev in new]
            if c.execute(q.exploit, changes).rowcount < len(new):
                self._lease_lost(c, eid, [ev.member for ev in new], worker)
            c.execute(q.add_event, [{
                "experiment_id": eid, "member": ev.member, "step": ev.step, "source": ev.source,
                "source_step": ev.source_step, "old_hparams": _dumps(ev.old_hparams), "new_hparams": _dumps(ev.new_hparams),
                "source_hparams": _dumps(ev.source_hparams), "kind": ev.kind, "time": ev.time} for ev in new])

    def mark_ready(self, name: str, member: int, worker: str, step: int) -> None:
        with self._tx() as c:
            self._held(c, self._eid(c, name), member, worker, last_ready=step, pending=False)

    def finish(self, name: str, member: int, worker: str) -> None:
        m = t.members.c
        with self._tx() as c:
            eid = self._eid(c, name)
            if c.execute(select(m.status).where(self._where(eid, member))).scalar_one() == DONE:
                return  # finished already (a retry after the commit's answer was lost)
            self._held(c, eid, member, worker, status=DONE, worker=None, lease_until=0.0)

    def record_failure(self, name: str, member: int, worker: str, error: str, max_failures: int) -> str:
        m = t.members.c
        with self._tx() as c:
            eid = self._eid(c, name)
            failures = c.execute(select(m.failures).where(self._where(eid, member))).scalar_one() + 1
            status = FAILED if failures > max_failures else ACTIVE
            self._held(c, eid, member, worker, failures=failures, error=error, status=status, worker=None,
                       lease_until=0.0, version=m.version + 1, revision=q.revision(self._kind, eid))
            return status

    def rollback(self, name: str, member: int, worker: str, ckpt: CheckpointRecord | None) -> MemberRecord:
        r, e, m = t.reports.c, t.events.c, t.members.c
        with self._tx() as c:
            eid = self._eid(c, name)
            row = c.execute(select(t.members).where(self._where(eid, member))).one()
            if ckpt is None:
                step, hparams, last_ready, pending = 0, json.loads(row.initial_hparams), 0, False
                late_event = e.member == member
            else:
                step, hparams, last_ready, pending = ckpt.step, ckpt.hparams, ckpt.last_ready, ckpt.pending
                # a pending checkpoint precedes the decision at its step; any other follows it
                late_event = and_(e.member == member, e.step >= step if pending else e.step > step)
            score = c.execute(select(r.score).where(r.experiment_id == eid, r.member == member, r.step == step)).scalar()
            self._held(c, eid, member, worker, step=step, hparams=_dumps(hparams), last_ready=last_ready,
                       pending=pending, last_score=score, version=m.version + 1, ckpt_version=m.version + 1,
                       revision=q.revision(self._kind, eid))
            c.execute(delete(t.reports).where(r.experiment_id == eid, r.member == member, r.step > step))
            c.execute(delete(t.events).where(e.experiment_id == eid, late_event))
            return _member(c.execute(select(t.members).where(self._where(eid, member))).one())

    # scores and lineage
    def scores(self, name: str, at_step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        with self._read() as c:
            eid = self._eid(c, name)
            if at_step is not None:
                rows = c.execute(q.scores_at, {"eid": eid, "at_step": at_step}).all()
                return (np.array([r[0] for r in rows], dtype=np.int64),
                        np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64))
            board = self._boards.setdefault(name, Scoreboard()) if self._kind != "other" else Scoreboard()
            if self._kind == "postgresql":
                horizon = c.execute(q.running_horizon).scalar()
                board.apply(c.execute(q.changed_scores, {"eid": eid, "since": board.seen}))
                board.seen = horizon
            else:
                rows = c.execute(q.changed_scores, {"eid": eid, "since": board.seen + 1}).all()
                board.apply(rows)
                board.seen = max([board.seen, *(r[4] for r in rows)])
            return board.ids.copy(), board.scores.copy()

    def recent_scores(self, name: str, window: int, at_step: int | None = None,
                      members: Sequence[int] | None = None) -> dict[int, list[float | None]]:
        r, m = t.reports.c, t.members.c
        with self._read() as c:
            eid = self._eid(c, name)
            live = and_(m.experiment_id == eid, m.status != FAILED)
            if members is not None:
                live = and_(live, m.id.in_(list(members)))
            newest = at_step if at_step is not None else m.step
            query = (select(r.member, r.score).join(t.members, and_(m.experiment_id == r.experiment_id, m.id == r.member))
                     .where(live, r.experiment_id == eid, r.step <= newest, r.step > newest - window)
                     .order_by(r.member, r.step))
            out: dict[int, list[float | None]] = {}
            for row in c.execute(query):
                out.setdefault(row.member, []).append(row.score)
            return out

    def recent_reports(self, name: str, window: int, at_step: int | None = None) -> list[Report]:
        r, m = t.reports.c, t.members.c
        with self._read() as c:
            eid = self._eid(c, name)
            newest = at_step if at_step is not None else m.step
            query = (select(t.reports).join(t.members, and_(m.experiment_id == r.experiment_id, m.id == r.member))
                     .where(m.experiment_id == eid, m.status != FAILED, r.experiment_id == eid,
                            r.step <= newest, r.step > newest - window)
                     .order_by(r.member, r.step))
            return [_report(x) for x in c.execute(query)]

    def reports(self, name: str, members: Collection[int] | None = None, every: int | None = None) -> list[Report]:
        r, m = t.reports.c, t.members.c
        with self._read() as c:
            eid = self._eid(c, name)
            query = select(t.reports).where(r.experiment_id == eid)
            if members is not None:
                query = query.where(r.member.in_(sorted(members)))
            if every is not None and every > 1:  # each member's every `every`-th step, its first and its newest
                newest = (select(m.step).where(m.experiment_id == eid, m.id == r.member).scalar_subquery())
                query = query.where(or_(r.step % every == 0, r.step == 1, r.step >= newest))
            decoded: dict[str, Any] = {}
            return [_report(x, decoded) for x in c.execute(query.order_by(r.member, r.step))]

    def reports_after(self, name: str, steps: Mapping[int, int]) -> list[Report]:
        r, m = t.reports.c, t.members.c
        with self._read() as c:
            eid = self._eid(c, name)
            # only a member still training, or one past its step in `steps`, can have a report above it: the lowest
            # of their steps bounds the read (a member that finished or failed no longer holds it back)
            standing = c.execute(select(m.id, m.step, m.status).where(m.experiment_id == eid)).all()
            lowest = min((steps.get(x.id, 0) for x in standing if x.status == ACTIVE or x.step > steps.get(x.id, 0)),
                         default=None)
            if lowest is None:
                return []
            rows = c.execute(select(t.reports).where(r.experiment_id == eid, r.step > lowest)
                             .order_by(r.member, r.step))
            return [_report(x) for x in rows if x.step > steps.get(x.member, 0)]

    def events(self, name: str, after: int | None = None) -> list[Event]:
        e = t.events.c
        with self._read() as c:
            eid = self._eid(c, name)
            query = select(t.events).where(e.experiment_id == eid)
            if after is not None:
                query = query.where(e.id > after)
            return [Event(member=x.member, step=x.step, source=x.source, source_step=x.source_step,
                          old_hparams=json.loads(x.old_hparams), new_hparams=json.loads(x.new_hparams),
                          time=x.time, kind=x.kind, source_hparams=json.loads(x.source_hparams), id=x.id)
                    for x in c.execute(query.order_by(e.id))]

    def progress(self, name: str, mode: str) -> Progress:
        m = t.members.c
        with self._read() as c:
            eid = self._eid(c, name)
            rows = c.execute(select(m.id, m.step, m.status, m.last_score).where(m.experiment_id == eid)).all()
            exploits = c.execute(select(func.count()).select_from(t.events).where(t.events.c.experiment_id == eid)).scalar()
            spec = json.loads(c.execute(select(t.experiments.c.spec).where(t.experiments.c.id == eid)).scalar_one())
        return summarize(rows, exploits, int(spec["steps"]), mode)

    # checkpoints
    def add_checkpoint(self, name: str, ckpt: CheckpointRecord, version: int, keep: int, now: float,
                       worker: str) -> list[str]:
        return self.add_checkpoints(name, [(ckpt, version)], keep, now, worker)

    def add_checkpoints(self, name: str, records: list[tuple[CheckpointRecord, int]], keep: int, now: float,
                        worker: str) -> list[str]:
        with self._tx() as c:
            eid = self._eid(c, name)
            if not records:
                return []
            # a retry after the commit's answer was lost finds its records there (each key is new per write)
            there = set(c.execute(q.recorded_keys, {"eid": eid, "mids": [ckpt.member for ckpt, _ in records],
                                                    "keys": [ckpt.key for ckpt, _ in records]}).scalars())
            records = [(ckpt, version) for ckpt, version in records if ckpt.key not in there]
            if not records:
                return []
            members = [ckpt.member for ckpt, _ in records]
            ready = [{"eid": eid, "mid": ckpt.member, "wid": worker, "ready_step": ckpt.last_ready,
                      "is_pending": ckpt.pending} for ckpt, _ in records]
            if c.execute(q.mark_ready, ready).rowcount < len(records):
                self._lease_lost(c, eid, members, worker)
            last = {member: seq for member, seq in c.execute(q.last_seqs, {"eid": eid, "mids": members})}
            added: list[dict[str, Any]] = []
            for ckpt, _ in records:
                last[ckpt.member] = seq = last.get(ckpt.member, 0) + 1
                added.append({
                    "experiment_id": eid, "member": ckpt.member, "seq": seq, "step": ckpt.step, "key": ckpt.key,
                    "checksum": ckpt.checksum, "hparams": _dumps(ckpt.hparams), "last_ready": ckpt.last_ready,
                    "pending": ckpt.pending, "created": ckpt.created, "pinned_until": ckpt.pinned_until})
            c.execute(q.add_checkpoint, added)
            c.execute(q.mark_current, [{"eid": eid, "mid": ckpt.member, "ver": version} for ckpt, version in records])
            # every member keeps its newest `keep` checkpoints, and any pinned ones
            kept: dict[int, list[Any]] = {member: [] for member in members}
            for row in c.execute(q.newest_first, {"eid": eid, "mids": members}):
                kept[row.member].append(row)
            now = self._now(c)  # pins end on the database's clock
            old = [row for rows in kept.values() for row in rows[keep:] if row.pinned_until < now]
            if old:
                c.execute(q.drop_checkpoint, [{"eid": eid, "mid": row.member, "at_seq": row.seq} for row in old])
            return [row.key for row in old]

    def checkpoints(self, name: str, member: int) -> list[CheckpointRecord]:
        k = t.checkpoints.c
        with self._read() as c:
            eid = self._eid(c, name)
            rows = c.execute(select(t.checkpoints).where(k.experiment_id == eid, k.member == member).order_by(k.seq.desc()))
            return [_checkpoint(x) for x in rows]

    def pin_checkpoint(self, name: str, member: int, until: float, at_step: int | None = None,
                       skip: tuple[int, ...] = (), pending: bool | None = None) -> CheckpointRecord | None:
        k = t.checkpoints.c
        with self._tx() as c:
            eid = self._eid(c, name)
            cond = and_(k.experiment_id == eid, k.member == member)
            if at_step is not None:
                cond = and_(cond, k.step <= at_step)
            if pending is not None:
                cond = and_(cond, k.pending == pending)
            if skip:
                cond = and_(cond, k.seq.not_in(skip))
            row = c.execute(select(t.checkpoints).where(cond).order_by(k.seq.desc()).limit(1)).first()
            if row is None:
                return None
            until = self._now(c) + (until - time.time())  # the caller's span, on the database's clock
            c.execute(update(t.checkpoints).where(k.experiment_id == eid, k.member == member, k.seq == row.seq)
                      .values(pinned_until=func.max(k.pinned_until, until) if self._kind == "sqlite"
                              else func.greatest(k.pinned_until, until)))
            return replace(_checkpoint(row), pinned_until=until)

    def unpin_checkpoint(self, name: str, member: int, seq: int, until: float) -> None:
        k = t.checkpoints.c
        with self._tx() as c:
            c.execute(update(t.checkpoints).where(k.experiment_id == self._eid(c, name), k.member == member,
                                                  k.seq == seq, k.pinned_until == until).values(pinned_until=0.0))

    def delete_checkpoint(self, name: str, member: int, seq: int, now: float) -> bool:
        k = t.checkpoints.c
        with self._tx() as c:
            eid = self._eid(c, name)
            return c.execute(delete(t.checkpoints).where(k.experiment_id == eid, k.member == member, k.seq == seq,
                                                         k.pinned_until < min(now, self._now(c)))).rowcount == 1
