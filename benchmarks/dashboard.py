"""What one poll of the dashboard's experiment page costs, against reading the whole run as a page load does.

A run of `--members` members that reported `--intervals` intervals each (written straight into a
SQLite store; no training); then every member reports one interval more. Measured through the
dashboard's own app (no network): the whole run (`GET /api/experiments/NAME`: every figure), a
poll that brings that one new interval (`POST .../updates` with the page's cursor), and a poll
with nothing new. Each is the median of `--repeat` runs, with the bytes sent.

    python benchmarks/dashboard.py [--members 1000] [--intervals 100] [--repeat 3] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")

from starlette.testclient import TestClient  # noqa: E402

from poptrain import Experiment  # noqa: E402
from poptrain.report.dashboard import create_app  # noqa: E402
from poptrain.store import MemberRecord, open_store  # noqa: E402

NAME = "big"


def write_run(url: str, members: int, intervals: int) -> Any:
    """A stored run of `members` members with `intervals` reports each; returns the store, the members leased."""
    exp = Experiment(name=NAME, trainable="toy_quadratic:ToyQuadratic", paths=[EXAMPLES], population=members,
                     space={"lr": {"type": "loguniform", "low": 1e-3, "high": 1.0}}, steps=10**6, storage=url,
                     metric="score", mode="max", checkpoints="local")
    store = open_store(url)
    store.create_experiment(NAME, exp.to_spec(), [MemberRecord(id=i, seed=i, hparams={"lr": 0.01 * (1 + i % 50)},
                                                               initial_hparams={"lr": 0.01}) for i in range(members)])
    store.claim_all(NAME, "writer", 3600, time.time())
    for step in range(1, intervals + 1):
        report_step(store, members, step)
    return store


def report_step(store: Any, members: int, step: int) -> None:
    """Every member reports `step`."""
    store.report_many(NAME, "writer", step, [(m, 1.0 - 1.0 / (step + m % 7), {}, {"lr": 0.01 * (1 + m % 50)})
                                             for m in range(members)], time.time())


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, int]:
    """The median seconds of `repeat` calls of `call` (an HTTP response) and the bytes of its body."""
    seconds, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = call()
        seconds.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text[:300]
        size = len(response.content)
    return statistics.median(seconds), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--intervals", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="20 members x 10 intervals, once each (the test suite)")
    args = parser.parse_args()
    if args.smoke:
        args.members, args.intervals, args.repeat = 20, 10, 1
    with tempfile.TemporaryDirectory(prefix="poptrain-dashboard-bench-") as folder:
        url = f"sqlite:///{folder}/d.db"
        store = write_run(url, args.members, args.intervals)
        client = TestClient(create_app(url))
        whole_s, whole_bytes = timed(lambda: client.get(f"/api/experiments/{NAME}"), args.repeat)
        cursor = client.get(f"/api/experiments/{NAME}").json()["cursor"]
        report_step(store, args.members, args.intervals + 1)
        poll_s, poll_bytes = timed(lambda: client.post(f"/api/experiments/{NAME}/updates", json=cursor), args.repeat)
        news = client.post(f"/api/experiments/{NAME}/updates", json=cursor).json()
        idle_s, idle_bytes = timed(lambda: client.post(f"/api/experiments/{NAME}/updates", json=news["cursor"]),
                                   args.repeat)
        store.close()
    print(f"{args.members} members x {args.intervals} intervals, SQLite, median of {args.repeat}")
    print(f"whole run (page load): {whole_s:.3f} s, {whole_bytes / 1e6:.2f} MB")
    print(f"poll with one new interval of every member: {poll_s:.3f} s, {poll_bytes / 1e6:.3f} MB")
    print(f"poll with nothing new: {idle_s:.3f} s, {idle_bytes / 1e6:.3f} MB")
    print(f"poll / whole run: {poll_s / whole_s:.3f}x the time, {poll_bytes / whole_bytes:.3f}x the bytes")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
