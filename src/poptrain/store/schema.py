"""The SQL tables of a population store (SQLAlchemy Core), and the steps that upgrade an older store."""

from __future__ import annotations

from typing import Callable

from sqlalchemy import (BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

# Version 2 indexes reports by step, so a synchronous decision reads one row per member, not the
# history; version 3 stamps each member row with the revision that last changed its score or
# status, so a decision reads only what changed since the previous one; version 4 never reuses an
# event id on SQLite (AUTOINCREMENT), so a reader asking for the events after an id misses none
# when a rollback has deleted the newest ones.
SCHEMA_VERSION = 4
# readers open stores from this version on; a writer upgrades older ones in place (a version 3 store
# reads the same: only its writers could reuse an event id)
OLDEST_READABLE = 3

metadata = MetaData()

meta = Table(
    "poptrain_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

experiments = Table(
    "experiments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("spec", Text, nullable=False),
    Column("created", Float, nullable=False),
)

members = Table(
    "members", metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.id"), primary_key=True),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seed", Integer, nullable=False),
    Column("hparams", Text, nullable=False),
    Column("initial_hparams", Text, nullable=False),
    Column("step", Integer, nullable=False, default=0),
    Column("last_ready", Integer, nullable=False, default=0),
    Column("pending", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("worker", String(128)),
    Column("lease_until", Float, nullable=False, default=0.0),
    Column("version", Integer, nullable=False, default=0),
    Column("ckpt_version", Integer, nullable=False, default=-1),
    Column("last_score", Float),
    Column("failures", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("revision", BigInteger, nullable=False, default=0),
    Index("ix_members_revision", "experiment_id", "revision"),
)

reports = Table(
    "reports", metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.id"), primary_key=True),
    Column("member", Integer, primary_key=True, autoincrement=False),
    Column("step", Integer, primary_key=True, autoincrement=False),
    Column("score", Float),
    Column("metrics", Text, nullable=False),
    Column("hparams", Text, nullable=False),
    Column("time", Float, nullable=False),
    Index("ix_reports_step", "experiment_id", "step"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("member", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("source", Integer, nullable=False),
    Column("source_step", Integer, nullable=False),
    Column("old_hparams", Text, nullable=False),
    Column("new_hparams", Text, nullable=False),
    Column("source_hparams", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("time", Float, nullable=False),
    Index("ix_events_member", "experiment_id", "member"),
    sqlite_autoincrement=True,  # PostgreSQL's serial sequence never reuses ids either
)

checkpoints = Table(
    "checkpoints", metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.id"), primary_key=True),
    Column("member", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("step", Integer, nullable=False),
    Column("key", Text, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("hparams", Text, nullable=False),
    Column("last_ready", Integer, nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("created", Float, nullable=False),
    Column("pinned_until", Float, nullable=False, default=0.0),
    UniqueConstraint("experiment_id", "member", "seq"),
)


def _index(table: Table, name: str) -> Index:
    return next(i for i in table.indexes if i.name == name)


def _index_reports_by_step(c: Connection) -> None:
    _index(reports, "ix_reports_step").create(c, checkfirst=True)


def _stamp_revisions(c: Connection) -> None:
    if "revision" not in {col["name"] for col in inspect(c).get_columns("members")}:
        c.exec_driver_sql("ALTER TABLE members ADD COLUMN revision BIGINT NOT NULL DEFAULT 0")
    _index(members, "ix_members_revision").create(c, checkfirst=True)


def _never_reuse_event_ids(c: Connection) -> None:
    """SQLite: rebuild the events table with AUTOINCREMENT (a plain rowid reuses a deleted top id); ids are kept."""
    if c.dialect.name != "sqlite":
        return
    ddl = c.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'").scalar()
    if "AUTOINCREMENT" in (ddl or "").upper():
        return
    columns = ", ".join(col.name for col in events.columns)
    c.exec_driver_sql("ALTER TABLE events RENAME TO events_before_v4")
    c.exec_driver_sql("DROP INDEX IF EXISTS ix_events_member")  # it moved with the renamed table
    events.create(c)
    c.exec_driver_sql(f"INSERT INTO events ({columns}) SELECT {columns} FROM events_before_v4 ORDER BY id")
    c.exec_driver_sql("DROP TABLE events_before_v4")


# MIGRATIONS[v] takes a store from version v - 1 to v; each step is idempotent.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _index_reports_by_step, 3: _stamp_revisions,
                                                       4: _never_reuse_event_ids}


def upgrade(c: Connection, found: int) -> None:
    """Bring a store of schema version `found` to SCHEMA_VERSION, inside the caller's transaction."""
    for version in range(found + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version](c)
