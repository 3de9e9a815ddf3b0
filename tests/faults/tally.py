"""What the fault tests survived, counted as they run and printed as one line at the end of the session."""

from __future__ import annotations

from collections import Counter

TALLY: Counter[str] = Counter()


def add(**counts: int) -> None:
    """Add to the session's counters: kills, members, completed, rows, lost, duplicated, corrupt, outages, retries."""
    TALLY.update({k: int(v) for k, v in counts.items()})
    TALLY["recorded"] += 1


def summary() -> str | None:
    """The summary line, or None if no fault test recorded anything this session."""
    t = TALLY
    if not t["recorded"]:
        return None
    return (f"faults: kills survived={t['kills']}, nodes removed={t['nodes_removed']}, "
            f"members completed={t['completed']}/{t['members']}, "
            f"rows checked={t['rows']}, rows lost={t['lost']}, duplicated={t['duplicated']}, "
            f"corrupt checkpoints detected={t['corrupt']}, db outages survived={t['outages']} "
            f"(store retries={t['retries']})")
