"""The serial engine: the worker loop in this process, one member-interval at a time (debugging, tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

from ..spec import ExperimentSpec
from ..store import Store
from .base import Engine, check_not_batched
from .progress import ProgressDisplay
from .worker import Worker


@dataclass
class Serial(Engine):
    """Every member in this process, one interval at a time: the same seed gives the same run."""

    name: ClassVar[str] = "serial"

    def run(self, store: Store, spec: ExperimentSpec, trainable: Any = None, progress: bool = False) -> None:
        """Train the experiment to its budget in this process."""
        check_not_batched(store, spec.name, self.name)
        worker = Worker(store, spec.name, f"serial-{os.getpid()}", trainable=trainable, trust_spec_code=True)
        with ProgressDisplay(store, spec.name, spec.mode, enabled=progress) as display:
            worker.on_interval = display.update
            worker.run()
