"""What an exporter has not written yet: the store's new reports and exploit events, polled."""

from __future__ import annotations

from typing import Protocol

from ..records import DONE, FAILED
from ..store import Event, Report, Store


class Sink(Protocol):
    """A logger's writer: takes reports and exploit events once each, in store order."""

    def write(self, reports: list[Report], events: list[Event]) -> None:
        """Log these reports and exploits (and flush, so a live viewer sees them)."""

    def close(self) -> None:
        """Finish the logger's files or runs."""


class Feed:
    """Reads the store and hands out each report and event once (a reader: it never writes)."""

    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name
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

    def done(self) -> bool:
        """Whether every member has finished or failed (nothing more will be reported)."""
        members = self.store.members(self.name)
        return bool(members) and all(m.status in (DONE, FAILED) for m in members)
