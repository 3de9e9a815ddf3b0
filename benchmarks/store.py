"""How fast the population store takes reports and lease claims, and how long one PBT decision takes.

1. Reports per second and lease claims per second into SQLite and PostgreSQL with 1, 4 and 8
   writer processes (each writer holds its own members, as workers do).
2. The exploit decision (read the standings, decide) for one member in a population of 1,000
   and 10,000 members with a history of several reports each, on both databases: median and
   95th percentile while other workers keep reporting. A worker's first decision reads one row
   per member; later ones read only the members whose score changed since (never the history).

PostgreSQL is a throw-away server started from `initdb`/`postgres` on the PATH (as the tests do).

    python benchmarks/store.py [--reports 400] [--claims 200] [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402,F401  (the t-test imports it on first use; keep that out of the timings)

from pg import Postgres  # noqa: E402
from poptrain.standings import read_standings  # noqa: E402
from poptrain import Experiment  # noqa: E402
from poptrain.policy import EXPLOIT_RNG, decision_rng  # noqa: E402
from poptrain.store import MemberRecord, open_store  # noqa: E402




def experiment(url: str, name: str, members: int, exploit: str = "truncation") -> Experiment:
    """A stored experiment of `members` members (the trainable is never called here)."""
    exp = Experiment(name=name, trainable="toy_quadratic:ToyQuadratic", paths=[EXAMPLES], population=members,
                     space={"lr": {"type": "uniform", "low": 0.0, "high": 1.0}}, steps=10**6, storage=url,
                     exploit=exploit, metric="score", mode="max", checkpoints="local")  # one host; never written
    store = open_store(url)
    store.create_experiment(name, exp.to_spec(), [
        MemberRecord(id=i, seed=i, hparams={"lr": 0.5}, initial_hparams={"lr": 0.5}) for i in range(members)])
    store.close()
    return exp


def _writer(url: str, name: str, worker: str, task: str, count: int, start: Any, times: mp.Queue) -> None:
    store = open_store(url, create=False)
    mine = store.claim(name, worker, 3600, time.time(), barrier=False) if task == "reports" else None
    start.wait()  # every writer has opened the store (and leased its member): go together
    began = time.perf_counter()
    done = 0
    while done < count:
        if mine is not None:
            store.report(name, mine.id, worker, done + 1, 0.5, {"score": 0.5}, {"lr": 0.5}, time.time())
            done += 1
        else:  # lease the most due member and give it back, as a worker does around each interval
            rec = store.claim(name, worker, 3600, time.time(), barrier=False)
            if rec is not None:
                store.release(name, rec.id, worker)
                done += 1
    times.put((began, time.perf_counter()))
    store.close()


def throughput(url: str, task: str, writers: int, count: int) -> float:
    """Operations per second over all `writers` processes, from the first start to the last finish."""
    name = f"{task}-{writers}"
    experiment(url, name, 2 * writers)
    ctx = mp.get_context("spawn")
    start, times = ctx.Barrier(writers + 1, timeout=120), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, name, f"w{i}", task, count, start, times)) for i in range(writers)]
    for p in procs:
        p.start()
    start.wait()
    spans = []
    deadline = time.time() + 600
    while len(spans) < writers:
        try:
            spans.append(times.get(timeout=1))
        except queue.Empty:
            if time.time() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise SystemExit(f"a {task} writer failed or hung") from None
    for p in procs:
        p.join(60)
    return writers * count / (max(e for _, e in spans) - min(b for b, _ in spans))


def decision_times(url: str, members: int, exploit: str, history: int, samples: int = 50) -> tuple[float, list[float]]:
    """Milliseconds for one member's exploit decision as a worker takes it: its first, and `samples` later ones.

    Between two timed decisions other workers report new scores for 1% of the members (untimed),
    so each decision also reads what changed since the previous one.
    """
    name = f"decide-{exploit}-{members}"
    exp = experiment(url, name, members, exploit)
    others = open_store(url, create=False)
    others.claim_all(name, "others", 3600, time.time())
    rng = np.random.default_rng(0)
    for step in range(1, history + 1):
        rows = [(i, float(x), {"score": float(x)}, {"lr": 0.5}) for i, x in enumerate(rng.random(members))]
        others.report_many(name, "others", step, rows, time.time())
    store = open_store(url, create=False)

    def decide(member: int) -> float:
        began = time.perf_counter()
        standings = read_standings(store, name, exp, None)
        exp.exploit.decide(standings.view(member), standings, decision_rng(0, member, history, EXPLOIT_RNG))
        return 1000 * (time.perf_counter() - began)

    first = decide(0)
    out = []
    for member in rng.choice(members, samples, replace=False):
        changed = rng.choice(members, max(1, members // 100), replace=False)
        others.report_many(name, "others", history + 1, [(int(i), float(rng.random()), {}, {"lr": 0.5})
                                                        for i in changed], time.time())
        out.append(decide(int(member)))
    store.close()
    others.close()
    return first, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=400, help="reports per writer")
    parser.add_argument("--claims", type=int, default=200, help="claim-and-release rounds per writer")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--history", type=int, default=10, help="reports per member before deciding")
    args = parser.parse_args()
    server = Postgres()
    try:
        with tempfile.TemporaryDirectory() as folder:
            urls = {"sqlite": lambda tag: f"sqlite:///{folder}/{tag}.db",
                    "postgresql": lambda tag: server.new_database()}
            print(f"store throughput (2 CPU cores here; {args.reports} reports / {args.claims} claims per writer)")
            for backend, url_for in urls.items():
                for writers in (1, 4, 8):
                    url = url_for(f"w{writers}")
                    reports = throughput(url, "reports", writers, args.reports)
                    claims = throughput(url, "claims", writers, args.claims)
                    print(f"  {backend:>10}  {writers} writer(s): {reports:8.0f} reports/s  {claims:8.0f} claims/s")
            print(f"exploit decision for one member ({args.history} reports per member stored; target < 5 ms "
                  f"at 10,000 members on PostgreSQL)")
            for backend, url_for in urls.items():
                for size in args.sizes:
                    for exploit in ("truncation", "tournament", "ttest"):
                        first, ms = decision_times(url_for(f"d{size}-{exploit}"), size, exploit, args.history)
                        print(f"  {backend:>10}  {size:>6} members  {exploit:>10}: median {statistics.median(ms):6.2f} ms"
                              f"  p95 {np.percentile(ms, 95):6.2f} ms  (first, reading every member: {first:6.2f} ms)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
