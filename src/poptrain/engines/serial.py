"""The serial engine: the worker loop in this process, one member-interval at a time (debugging, tests)."""

from __future__ import annotations

import os

from ..store import Store
from .progress import ProgressDisplay
from .worker import Worker


def run_serial(store: Store, name: str, trainable: type | None = None, progress: bool = False) -> None:
    """Train the experiment to its budget in this process; same seed gives the same run."""
    worker = Worker(store, name, f"serial-{os.getpid()}", trainable=trainable)
    with ProgressDisplay(store, name, worker.exp.mode, enabled=progress) as display:
        worker.on_interval = display.update
        worker.run()
