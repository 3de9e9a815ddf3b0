"""Export an experiment's reports and exploits to TensorBoard or MLflow, once or while it trains.

An exporter only reads the store (it is a reader, like the report and the dashboard) and writes the
logger's own files through the logger's own library.
"""

from __future__ import annotations

import time

from ..errors import PoptrainError, SpecError
from .feed import Feed, Sink

TARGETS = ("tensorboard", "mlflow")


class FollowTimeout(PoptrainError):
    """--follow's --timeout ran out before every member was done."""


def open_sink(to: str, target: str, name: str, spec: dict) -> Sink:
    """The writer for `to`, its target checked before anything is read or written."""
    if to == "tensorboard":
        from .tensorboard import TensorBoardSink

        return TensorBoardSink(target, name)
    if to == "mlflow":
        from .mlflow import MlflowSink

        return MlflowSink(target, name, spec)
    raise SpecError(f"cannot export to {to!r}: choose one of {', '.join(TARGETS)}")


def export(storage: str, name: str, to: str, target: str, follow: bool = False, every: float = 5.0,
           timeout: float | None = None) -> int:
    """Write the experiment's scores, metrics, hyperparameters and exploits to `to` at `target`.

    With `follow`, keep polling the store every `every` seconds and write what is new until every
    member is done or failed, so the logger shows a run live; after `timeout` seconds, raise
    FollowTimeout. Returns the number of reports written. The logger's runs end FINISHED, or FAILED
    if the export failed; stopped by KeyboardInterrupt or the timeout, they end FINISHED with what
    was written.
    """
    from ..result import load

    result = load(storage, name)
    sink = open_sink(to, target, name, result.spec)
    try:
        written = _feed(Feed(result.store, name, storage), sink, follow, every, timeout)
    except (KeyboardInterrupt, FollowTimeout):  # stopped as asked: what was written is right so far
        sink.close()
        raise
    except BaseException:
        sink.close(failed=True)
        raise
    sink.close()
    return written


def _feed(feed: Feed, sink: Sink, follow: bool, every: float, timeout: float | None) -> int:
    """Hand the feed's reports and events to the sink until done (once, without `follow`); the number written."""
    deadline = None if timeout is None else time.monotonic() + timeout
    written = 0
    while True:
        feed.check()
        done = feed.done()  # asked before reading, so the last pass sees every final report
        reports, events = feed.new()
        sink.write(reports, events)
        written += len(reports)
        if not follow or done:
            return written
        if deadline is not None and time.monotonic() >= deadline:
            raise FollowTimeout(f"--timeout {timeout:g}s ran out before every member of {feed.name!r} was done: "
                                f"{written} reports exported, what was exported stays; follow for longer, or "
                                f"export again to a new target once it is done")
        time.sleep(every if deadline is None else max(0.0, min(every, deadline - time.monotonic())))


__all__ = ["TARGETS", "FollowTimeout", "export", "open_sink"]
