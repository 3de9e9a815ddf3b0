"""What an exporter has not written yet: the store's new reports and exploit events, polled."""

from __future__ import annotations

import os
from typing import Protocol

from ..errors import StorageError
from ..records import DONE, FAILED
from ..store import Event, Report, Store
from ..redact import masked


class Sink(Protocol):
    """A logger's writer: takes reports and exploit events once each, in store order."""

    def write(self, reports: list[Report], events: list[Event]) -> None:
        """Log these reports and exploits (and flush, so a live viewer sees them)."""

    def close(self, failed: bool = False) -> None:
        """Finish the logger's files or runs (marked failed where the logger has such a mark)."""


class Feed:
    """Reads the store and hands out each report and event once (a reader: it never writes)."""

    def __init__(self, store: Store, name: str, storage: str | None = None) -> None:
        self.store, self.name, self.storage = store, name, storage
        self._file = _sqlite_file(storage) if storage else None
        self._inode = _inode(self._file) if self._file else None
        self._seen: set[tuple[int, int, float]] = set()
        self._last_event: int | None = None  # the id of the newest event handed out

    def new(self) -> tuple[list[Report], list[Event]]:
        """The reports and exploit events stored since the last call."""
        reports = []
        for r in self.store.reports(self.name):
            key = (r.member, r.step, r.time)  # a member taken over after a crash may report a step again
            if key not in self._seen:
                self._seen.add(key)
                reports.append(r)
        # by id, not position: a rollback after a crash deletes a member's late events, and the ids
        # of events recorded after it are still above every id read before
        events = self.store.events(self.name, after=self._last_event)
        if events:
            self._last_event = events[-1].id
        return reports, events

    def check(self) -> None:
        """Raise one line if the experiment, or the SQLite file holding it, was deleted since the feed began."""
        where = masked(self.storage, self.storage) if self.storage else "the store"
        if self._file and _inode(self._file) != self._inode:  # an open connection would read the deleted file
            raise StorageError(f"{self._file} was deleted (or replaced) while exporting {self.name!r}: stopped; "
                               f"what was exported stays")
        if self.name not in self.store.experiments():
            raise StorageError(f"experiment {self.name!r} was deleted from {where} while exporting it: stopped; "
                               f"what was exported stays")

    def done(self) -> bool:
        """Whether every member has finished or failed (nothing more will be reported)."""
        members = self.store.members(self.name)
        return bool(members) and all(m.status in (DONE, FAILED) for m in members)


def _sqlite_file(storage: str) -> str | None:
    """The database file of a sqlite URL, else None."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
    except Exception:  # memory:// and other stores that are not SQLAlchemy URLs
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(url.database)


def _inode(path: str) -> tuple[int, int] | None:
    """The file's device and inode, None if it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
