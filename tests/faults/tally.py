"""What the fault tests survived, counted as they run and printed as one line at the end of the session."""

from __future__ import annotations

from collections import Counter

TALLY: Counter[str] = Counter()
KNOWN = ("kills", "members", "completed", "rows", "lost", "duplicated", "corrupt", "outages", "retries", "recorded")


def add(**counts: int) -> None:
    """Add to the session's counters: kills, members, completed, rows, lost, duplicated, corrupt, outages, retries.

    Any other name (a fault of a new kind, e.g. connections_cut) is counted too and shown on the
    summary line as its name with spaces for underscores.
    """
    TALLY.update({k: int(v) for k, v in counts.items()})
    TALLY["recorded"] += 1


def summary() -> str | None:
    """The summary line, or None if no fault test recorded anything this session."""
    t = TALLY
    if not t["recorded"]:
        return None
    others = "".join(f", {key.replace('_', ' ')}={t[key]}" for key in sorted(set(t) - set(KNOWN)))
    return (f"faults: kills survived={t['kills']}, members completed={t['completed']}/{t['members']}, "
            f"rows checked={t['rows']}, rows lost={t['lost']}, duplicated={t['duplicated']}, "
            f"corrupt checkpoints detected={t['corrupt']}, db outages survived={t['outages']}{others} "
            f"(store retries={t['retries']})")
