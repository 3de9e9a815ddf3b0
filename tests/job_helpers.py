"""What the scripts of multi-rank job tests share (they import it from the tests folder)."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any


def all_started(log: str, rank: int, ranks: int) -> None:
    """Wait (a minute at most) until every rank of every job is here, so a slow job still finds a member."""
    folder = os.path.dirname(log)
    open(f"{log}.started.{rank}", "w").close()
    deadline = time.monotonic() + 60
    while sum(".started." in name for name in os.listdir(folder)) < ranks and time.monotonic() < deadline:
        time.sleep(0.05)


def digest(module: Any) -> str:
    """A hash of a module's parameters: equal on every rank that holds the same weights."""
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in module.parameters())).hexdigest()
