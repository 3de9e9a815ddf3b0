"""Stores remember: the population (SQL or in-memory) and member checkpoints (fsspec)."""

from __future__ import annotations

import os

from sqlalchemy.engine import make_url

from .base import CheckpointRecord, Event, MemberRecord, Progress, Report, Store
from .checkpoints import CheckpointStore
from .memory import MemoryStore
from .sql import SQLStore

_memory_stores: dict[str, MemoryStore] = {}


def open_store(url: str) -> Store:
    """Open the store a URL names: `sqlite:///path.db`, `postgresql://...`, or `memory://NAME`."""
    if url.startswith("memory://"):
        return _memory_stores.setdefault(url, MemoryStore(url))
    return SQLStore(url)


def default_checkpoints(storage: str, experiment: str) -> str:
    """Where checkpoints go unless the spec says: a folder beside the SQLite file."""
    if storage.startswith("memory://"):
        return f"memory://poptrain-checkpoints/{storage[len('memory://'):]}"
    url = make_url(storage)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        stem, _ = os.path.splitext(os.path.abspath(url.database))
        return f"{stem}.checkpoints"
    return os.path.abspath("poptrain-checkpoints")


__all__ = ["CheckpointRecord", "CheckpointStore", "Event", "MemberRecord", "MemoryStore", "Progress", "Report",
           "SQLStore", "Store", "default_checkpoints", "open_store"]
