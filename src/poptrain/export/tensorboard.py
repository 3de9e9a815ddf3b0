"""TensorBoard: event files through torch's SummaryWriter, one run (subfolder) per member.

Scalars by step: `score`, `metric/<name>` for each numeric metric, `hparam/<name>` for each numeric
hyperparameter, and at each exploit `exploit_source` (the member copied) with an `exploit` text entry.
A name with characters other than letters, digits, _ - . is cleaned, with a suffix where two names
clean alike, and a `renamed` text entry in the run maps each such name back to the name reported.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import SpecError, PoptrainError
from ..store import Event, Report
from .names import UniqueNames, exploit_line, markdown_text, number, safe_name, writable_folder


class TensorBoardSink:
    """Writes DIR/<experiment>/member-<id>/ event files; refuses a folder that already holds an export."""

    def __init__(self, folder: str, name: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SpecError("--to tensorboard needs the tensorboard package: pip install 'poptrain[loggers]'") from None
        self._writer_class = SummaryWriter
        self.root = os.path.join(writable_folder(folder, "TensorBoard logs"), safe_name(name))
        if os.path.isdir(self.root) and os.listdir(self.root):
            # a second export into the same runs would show every point twice
            raise PoptrainError(f"{self.root} already holds TensorBoard logs of {name!r}: delete it or export to "
                                f"another folder")
        self._writers: dict[int, Any] = {}
        self._metric_names, self._hparam_names = UniqueNames(safe_name, 250), UniqueNames(safe_name, 250)
        self._renamed: dict[int, dict[str, str]] = {}  # per member: tag -> reported name, as in its `renamed` text

    def _writer(self, member: int) -> Any:
        if member not in self._writers:
            self._writers[member] = self._writer_class(log_dir=os.path.join(self.root, f"member-{member}"))
        return self._writers[member]

    def write(self, reports: list[Report], events: list[Event]) -> None:
        """Add each report's scalars and each exploit's marker at its step, then flush."""
        for r in reports:
            w = self._writer(r.member)
            renamed = self._renamed.setdefault(r.member, {})
            before = len(renamed)
            scalars: dict[str, float | None] = {"score": number(r.score)}
            for prefix, names, values in (("metric/", self._metric_names, r.metrics),
                                          ("hparam/", self._hparam_names, r.hparams)):
                for k, v in values.items():
                    if (x := number(v)) is not None:
                        tag = prefix + names(k)
                        scalars[tag] = x
                        if tag != prefix + k:
                            renamed[tag] = k
            for tag, x in scalars.items():
                if x is not None:
                    w.add_scalar(tag, x, r.step, walltime=r.time)
            if len(renamed) != before:  # the whole table again, at the step the new names first appear
                rows = "".join(f"| {markdown_text(tag)} | {markdown_text(k)} |\n" for tag, k in renamed.items())
                w.add_text("renamed", f"| logged as | reported as |\n|---|---|\n{rows}", r.step, walltime=r.time)
        for e in events:
            w = self._writer(e.member)
            w.add_scalar("exploit_source", float(e.source), e.step, walltime=e.time)
            text = exploit_line(e.source, e.source_step, e.old_hparams, e.new_hparams)
            w.add_text("exploit", markdown_text(text), e.step, walltime=e.time)
        for w in self._writers.values():
            w.flush()

    def close(self, failed: bool = False) -> None:
        """Close every member's event file (what was written stays, failed or not)."""
        for w in self._writers.values():
            w.close()
