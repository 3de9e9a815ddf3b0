"""Export an experiment's reports and exploits to TensorBoard or MLflow, once or while it trains.

An exporter only reads the store (it is a reader, like the report and the dashboard) and writes the
logger's own files through the logger's own library.
"""

from __future__ import annotations

import time

from ..errors import SpecError
from .feed import Feed, Sink

TARGETS = ("tensorboard", "mlflow")


def open_sink(to: str, target: str, name: str, spec: dict) -> Sink:
    """The writer for `to`, its target checked before anything is read or written."""
    if to == "tensorboard":
        from .tensorboard import TensorBoardSink

        return TensorBoardSink(target, name)
    if to == "mlflow":
        from .mlflow import MlflowSink

        return MlflowSink(target, name, spec)
    raise SpecError(f"cannot export to {to!r}: choose one of {', '.join(TARGETS)}")


def export(storage: str, name: str, to: str, target: str, follow: bool = False, every: float = 5.0) -> int:
    """Write the experiment's scores, metrics, hyperparameters and exploits to `to` at `target`.

    With `follow`, keep polling the store every `every` seconds and write what is new until every
    member is done or failed, so the logger shows a run live. Returns the number of reports written.
    """
    from ..result import load

    result = load(storage, name)
    sink = open_sink(to, target, name, result.spec)
    feed = Feed(result.store, name)
    written = 0
    try:
        while True:
            done = feed.done()  # asked before reading, so the last pass sees every final report
            reports, events = feed.new()
            sink.write(reports, events)
            written += len(reports)
            if not follow or done:
                return written
            time.sleep(every)
    finally:
        sink.close()


__all__ = ["TARGETS", "export", "open_sink"]
