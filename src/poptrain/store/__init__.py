"""Stores remember: the population (SQL or in-memory) and member checkpoints (fsspec)."""

from __future__ import annotations

import os
from typing import Callable

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..errors import SpecError, StorageError
from ..redact import shown
from .base import CheckpointRecord, Event, LeaseLost, MemberRecord, Progress, Report, Store
from .checkpoints import CheckpointStore
from .memory import MemoryStore
from .sql import SQLStore

_memory_stores: dict[str, MemoryStore] = {}


KNOWN_SCHEMES = "sqlite:///path/to/file.db, postgresql://user@host/db or memory://name"


def open_store(url: str, create: bool = True, wait: bool = False, read_only: bool = False) -> Store:
    """Open the store a URL names: `sqlite:///path.db`, `postgresql://...`, or `memory://NAME`.

    With `create=False` (workers joining, readers) a store that does not exist is an error, not a
    new empty one. With `read_only` (readers: status, report, best, the dashboard, `load`) it is
    also opened so that nothing can be written, a SQLite file's journal mode included. With
    `wait` (workers) an unreachable database is retried with back-off for the store's
    `retry_for` seconds, as every later call is.
    """
    scheme = url.partition("://")[0]
    if scheme in STORES:
        return STORES[scheme](url, create, wait, read_only)
    check_storage_url(url)
    if not create or read_only:
        path = _sqlite_file(url)
        if path is not None and not os.path.exists(path):
            raise StorageError(f"no store at {path}: check the storage URL, or `poptrain run` first")
    return SQLStore(url, create=create and not read_only, wait=wait, read_only=read_only)


def _open_memory(url: str, create: bool, wait: bool, read_only: bool) -> Store:
    if not create and url not in _memory_stores:
        raise StorageError(f"no store at {shown(url)} in this process")
    return _memory_stores.setdefault(url, MemoryStore(url))


# Stores by URL scheme, beside the SQL store that takes every SQLAlchemy URL (sqlite, postgresql):
# a new store is one module with a Store subclass, and one line here naming how to open it.
STORES: dict[str, Callable[[str, bool, bool, bool], Store]] = {
    "memory": _open_memory,
}


def check_storage_url(url: str) -> None:
    """Refuse a storage URL poptrain cannot use, in one line: an unknown scheme, or an in-memory SQLite database."""
    if url.partition("://")[0] in STORES:
        return
    parsed = _parse(url)
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise StorageError(f"storage URL {shown(url)!r}: poptrain does not know the scheme {parsed.drivername!r}; "
                           f"use {KNOWN_SCHEMES}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StorageError(f"storage URL {shown(url)!r} is an in-memory SQLite database, which workers in other processes "
                           f"could not share (and which is gone when the run ends): use sqlite:///path/to/file.db, "
                           f"or memory://name for one process")


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise StorageError(f"storage URL {shown(url)!r} is not valid: use {KNOWN_SCHEMES}") from None


def _sqlite_file(url: str) -> str | None:
    """The absolute database file of a sqlite URL (None for other URLs and in-memory SQLite)."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(parsed.database)


CHECKPOINTS_ENV = "POPTRAIN_CHECKPOINTS"  # where checkpoints go when the spec names no place
ONE_HOST = "local"  # checkpoints = "local": the store and every worker are on this host (network stores)


def default_checkpoints(storage: str, experiment: str, one_host: bool = False) -> str:
    """Where checkpoints go unless the spec says: $POPTRAIN_CHECKPOINTS, else beside the SQLite file (or in memory).

    A network store (PostgreSQL) has no such place every host reaches: it is refused, in one line
    naming the option, unless `one_host` (the spec's checkpoints = "local") keeps them in
    ./poptrain-checkpoints of the host that creates the experiment.
    """
    if os.environ.get(CHECKPOINTS_ENV) and not one_host:
        return os.environ[CHECKPOINTS_ENV]
    if storage.startswith("memory://"):
        return f"memory://poptrain-checkpoints/{storage[len('memory://'):]}"
    path = _sqlite_file(storage)
    if path is not None:
        return f"{os.path.splitext(path)[0]}.checkpoints"
    if one_host:
        return os.path.abspath("poptrain-checkpoints")
    where = shown(storage)
    raise SpecError(f"experiment {experiment!r} on the shared store {where} needs checkpoints every worker's host "
                    f"reaches: set checkpoints = \"s3://bucket/{experiment}\" (or a shared folder; --checkpoints or "
                    f"{CHECKPOINTS_ENV} also do), or checkpoints = \"{ONE_HOST}\" if the store and every worker run "
                    f"on this host")


__all__ = ["CheckpointRecord", "CheckpointStore", "Event", "LeaseLost", "MemberRecord", "MemoryStore", "Progress", "Report",
           "SQLStore", "STORES", "Store", "CHECKPOINTS_ENV", "ONE_HOST", "check_storage_url", "default_checkpoints",
           "open_store"]
