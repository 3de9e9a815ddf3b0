"""The live progress line of a run: steps done, best score, exploits so far, rate."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..store import Store


class ProgressDisplay:
    """Reads the store (never writes it) and redraws a rich progress bar."""

    def __init__(self, store: Store, name: str, mode: str, enabled: bool = True, every: float = 0.25) -> None:
        self.store, self.name, self.mode, self.every = store, name, mode, every
        self._last = 0.0
        self._start = time.monotonic()
        self._start_steps: int | None = None
        self._bar: Progress | None = None
        if enabled:
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=False)
            self._task = self._bar.add_task(escape(name), total=None, info="")

    def __enter__(self) -> "ProgressDisplay":
        if self._bar:
            self._bar.start()
        self.update(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.update(force=True)
        if self._bar:
            self._bar.stop()

    def update(self, force: bool = False) -> None:
        """Redraw at most every `every` seconds."""
        now = time.monotonic()
        if self._bar is None or (not force and now - self._last < self.every):
            return
        self._last = now
        p = self.store.progress(self.name, self.mode)
        if self._start_steps is None:
            self._start_steps = p.steps_done
        rate = (p.steps_done - self._start_steps) / max(now - self._start, 1e-9)
        best = "—" if p.best_score is None else f"{p.best_score:.4g} (member {p.best_member})"
        failed = f" · failed {p.failed}" if p.failed else ""
        info = f"best {best} · exploits {p.exploits} · {rate:.1f} intervals/s{failed}"
        self._bar.update(self._task, total=p.steps_total, completed=p.steps_done, info=info)
