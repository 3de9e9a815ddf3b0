"""A run of a million reports: what the readers and one decision cost on SQLite and PostgreSQL.

A synthetic population of 1,000 members trains 1,000 intervals on the vectorized engine (a fast
numpy trainable: each member's score drifts towards its hyperparameter, with noise; ready every
10 intervals, truncation, asynchronous spec), so the store holds 1,000,000 reports and the
lineage of every exploit. Then, on that store:

- `poptrain status` (the installed command, a fresh process): wall time, target < 1 s;
- one member's exploit decision as a worker takes it (read the standings, decide): median and
  99th percentile over 200 decisions, target < 5 ms;
- `poptrain report` (a fresh process): wall time, target < 30 s, and the page's size, target < 20 MB;
- the dashboard's first page and the experiment's page (its ASGI app, in this process): target < 2 s;
- `Result.frame()`: wall time and the peak of memory it allocates (tracemalloc), per report;
- the store's bytes per report (SQLite: the database file; PostgreSQL: the tables' total size).

PostgreSQL is a throw-away server started from `initdb`/`postgres` on the PATH (as the tests do).

    python benchmarks/scale.py [--members 1000] [--steps 1000] [--stores sqlite postgresql] [--keep FOLDER] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import numpy as np  # noqa: E402

import poptrain  # noqa: E402
from poptrain.policy import EXPLOIT_RNG, decision_rng  # noqa: E402
from poptrain.spec import ExperimentSpec  # noqa: E402
from poptrain.standings import read_standings  # noqa: E402
from poptrain.store import open_store  # noqa: E402

POPTRAIN = [sys.executable, "-m", "poptrain"]


def train(url: str, folder: str, members: int, steps: int) -> float:
    """Create and run the synthetic experiment; seconds it took."""
    exp = poptrain.Experiment(name="scale", trainable="drift_population:DriftPopulation", paths=[HERE], metric="score", mode="max", population=members,
                              steps=steps, space={"target": poptrain.Uniform(0.0, 2.0)}, ready=poptrain.Every(10),
                              exploit=poptrain.Truncation(0.2), storage=url, checkpoints=os.path.join(folder, "ckpt"),
                              keep_checkpoints=1, seed=0)
    began = time.perf_counter()
    exp.run(engine="vectorized")
    return time.perf_counter() - began


def command(*args: str) -> tuple[float, str]:
    """Seconds a fresh `poptrain` process takes, and what it printed."""
    began = time.perf_counter()
    done = subprocess.run([*POPTRAIN, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return time.perf_counter() - began, done.stdout


def decisions(url: str, samples: int) -> list[float]:
    """Milliseconds of one member's exploit decision (read the standings, decide), `samples` times."""
    store = open_store(url, create=False)
    spec = ExperimentSpec.from_spec(store.get_spec("scale"))
    members = len(store.members("scale"))
    times = []
    for i in range(samples):
        member = i * 7919 % members
        began = time.perf_counter()
        standings = read_standings(store, "scale", spec, None)
        spec.exploit.decide(standings.view(member), standings, decision_rng(0, member, i, EXPLOIT_RNG))
        times.append((time.perf_counter() - began) * 1000)
    store.close()
    return times


def dashboard_pages(url: str) -> tuple[float, float]:
    """Seconds for the dashboard's list of experiments, then the experiment's page (with its figures' data)."""
    from starlette.testclient import TestClient

    from poptrain.report.dashboard import create_app

    with TestClient(create_app(url)) as client:
        began = time.perf_counter()
        assert client.get("/").status_code == 200
        listed = time.perf_counter() - began
        began = time.perf_counter()
        page = client.get("/experiments/scale")
        assert page.status_code == 200, page.status_code
        assert client.get("/api/experiments/scale").status_code == 200  # the figures' data the page fetches
        return listed, time.perf_counter() - began


def frame_cost(url: str) -> tuple[float, float, int]:
    """Seconds for `Result.frame()`, the peak bytes it allocated, and its rows."""
    result = poptrain.load(url, "scale")
    tracemalloc.start()
    began = time.perf_counter()
    frame = result.frame()
    seconds = time.perf_counter() - began
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, len(frame)


def store_bytes(url: str, folder: str) -> int:
    """The bytes the store takes on disk."""
    if url.startswith("sqlite"):
        return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.startswith("scale.db"))
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as c:  # poptrain's tables, indexes included
        return int(c.execute("select sum(pg_total_relation_size(relid)) from pg_stat_user_tables").fetchone()[0])


def measure(kind: str, url: str, folder: str, members: int, steps: int) -> None:
    seconds = train(url, folder, members, steps)
    reports = members * steps
    print(f"{kind}: {members} members x {steps} intervals = {reports:,} reports, trained in {seconds:.1f} s "
          f"({reports / seconds:,.0f} reports/s)")
    status_s, _ = command("status", "--storage", url, "--experiment", "scale")
    print(f"  poptrain status: {status_s:.2f} s (target < 1 s, a fresh process, imports included)")
    ms = decisions(url, 200)
    print(f"  exploit decision: median {statistics.median(ms):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms "
          f"(target < 5 ms)")
    page = os.path.join(folder, f"{kind}.html")
    report_s, _ = command("report", "--storage", url, "--experiment", "scale", "-o", page)
    print(f"  poptrain report: {report_s:.1f} s (target < 30 s), {os.path.getsize(page) / 1e6:.1f} MB "
          f"(target < 20 MB)")
    listed, shown = dashboard_pages(url)
    print(f"  dashboard: experiments list {listed:.2f} s, the experiment's page and its figures {shown:.2f} s "
          f"(target < 2 s)")
    frame_s, peak, rows = frame_cost(url)
    print(f"  Result.frame(): {frame_s:.1f} s, {rows:,} rows, peak {peak / 1e6:.0f} MB allocated "
          f"({peak / max(rows, 1):.0f} bytes a report)")
    size = store_bytes(url, folder)
    print(f"  store: {size / 1e6:.0f} MB on disk, {size / reports:.0f} bytes a report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--smoke", action="store_true", help="20 members x 20 intervals")
    parser.add_argument("--keep", metavar="FOLDER", help="keep the SQLite store there (to look at it after)")
    args = parser.parse_args()
    if args.smoke:
        args.members, args.steps = 20, 20
    for kind in args.stores:
        with tempfile.TemporaryDirectory() as folder:
            if kind == "sqlite" and args.keep:
                os.makedirs(args.keep, exist_ok=True)
                folder = args.keep
            if kind == "sqlite":
                measure(kind, f"sqlite:///{folder}/scale.db", folder, args.members, args.steps)
                continue
            from pg import Postgres

            server = Postgres()
            server.start()
            try:
                measure(kind, server.new_database(), folder, args.members, args.steps)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
