"""How fast the population store takes reports and lease claims, and how long one PBT decision takes.

1. Reports per second and lease claims per second into SQLite and PostgreSQL with 1, 4 and 8
   writer processes (each writer holds its own members, as workers do).
2. The exploit decision (read the standings, decide) for one member in a population of 1,000
   and 10,000 members with a history of several reports each, on both databases: median and
   95th percentile while other workers keep reporting. A worker's first decision reads one row
   per member; later ones read only the members whose score changed since (never the history).

3. With `--clients N` instead: N ask/tell client processes (an interval is a sleep and a score)
   train one PostgreSQL population of 256 members to its budget; it prints lease claims per
   second with N processes claiming, and the p50 / p99 milliseconds of a lease (`ask`), a tell
   without a decision, a tell at a ready step, and the decision inside it (read the standings,
   pick), each with its mean CPU time in the client and its SQL statements, and where the CPU
   went (clients, their polls while the last members finish, the PostgreSQL server); then checks
   that every member reached its budget and no interval was recorded twice.

PostgreSQL is a throw-away server started from `initdb`/`postgres` on the PATH (as the tests do).

    python benchmarks/store.py [--reports 400] [--claims 200] [--sizes 1000 10000]
    python benchmarks/store.py --clients 64 [--members 256] [--steps 12] [--interval 0.05]
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

from faults.helpers import audit  # noqa: E402
from pg import Postgres  # noqa: E402
from poptrain.standings import read_standings  # noqa: E402
from poptrain import Every, Experiment, Exploit  # noqa: E402
from poptrain.asktell import Connection  # noqa: E402
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


def throughput(url: str, task: str, writers: int, count: int, start_method: str = "spawn") -> float:
    """Operations per second over all `writers` processes, from the first start to the last finish."""
    name = f"{task}-{writers}"
    experiment(url, name, 2 * writers)
    ctx = mp.get_context(start_method)
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


class TimedConnection(Connection):
    """An ask/tell connection that notes the milliseconds and CPU milliseconds (this thread's) of each decision."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decisions: list[tuple[float, float, int]] = []

    def _pick(self, rec: Any, at_step: int | None) -> Any:
        with Timing(self.decisions):
            return super()._pick(rec, at_step)


class Timing:
    """Appends (milliseconds, CPU milliseconds of this thread, SQL statements) of the block to `into`."""

    statements = 0  # SQL statements this process sent so far (BEGIN, COMMIT and the pool's pre-ping not counted)

    def __init__(self, into: list[tuple[float, float, int]]) -> None:
        self.into = into

    def __enter__(self) -> "Timing":
        self.began, self.cpu, self.statements_before = time.perf_counter(), time.thread_time(), Timing.statements
        return self

    def __exit__(self, *exc: object) -> None:
        self.into.append((1000 * (time.perf_counter() - self.began), 1000 * (time.thread_time() - self.cpu),
                          Timing.statements - self.statements_before))


def _count_statements() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def count(*_: Any) -> None:
        Timing.statements += 1

    event.listen(Engine, "before_cursor_execute", count)


def _client(url: str, name: str, worker: str, interval: float, start: Any, out: mp.Queue) -> None:
    """A user's own loop: ask for a member, train it to its budget (a sleep and a score per interval), ask again."""
    _count_statements()
    pop = TimedConnection(open_store(url, create=False), name, worker)
    times: dict[str, list[tuple[float, float, int]]] = {"lease": [], "tell": [], "ready tell": [], "waiting": []}
    polls = 0

    def waited() -> None:
        nonlocal polls
        polls += 1

    start.wait()
    while True:
        with Timing(times["lease"]) as lease:
            member = pop.ask(on_wait=waited)
        if member is None:  # the wait for the last members to finish
            times["waiting"].append(times["lease"].pop())
            break
        x = member.state["x"] if member.state is not None else 0.0
        while member.running:
            time.sleep(interval)
            x += member.hparams["lr"]
            decided = len(pop.decisions)
            tell = Timing([])
            with tell:
                decision = pop.tell(member, x, state={"x": x})
            times["ready tell" if len(pop.decisions) > decided else "tell"].extend(tell.into)
            if isinstance(decision, Exploit):
                x = decision.state["x"]
    del lease
    pop.close()
    out.put(({**times, "decision": pop.decisions}, polls, time.process_time()))


def clients(url: str, count: int, members: int, steps: int, interval: float, checkpoints: str,
            name: str = "clients", server_data: str = "") -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Train one population with `count` ask/tell client processes.

    Returns each operation's (milliseconds, CPU milliseconds, SQL statements) as rows, and totals:
    seconds taken, CPU seconds of the clients, of the database server, polls while waiting.
    The clients are forked from this process (it must not hold threads or open store connections).
    """
    Experiment(name=name, trainable=None, space={"lr": {"type": "uniform", "low": 0.0, "high": 1.0}},
               population=members, steps=steps, ready=Every(4), metric="score", mode="max", storage=url,
               checkpoints=checkpoints, keep_checkpoints=2).create()
    ctx = mp.get_context("fork")
    start, out = ctx.Barrier(count + 1, timeout=120), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(url, name, f"client-{i}", interval, start, out)) for i in range(count)]
    for p in procs:
        p.start()
    start.wait()
    began, server_cpu = time.perf_counter(), _server_cpu(server_data)
    rows: dict[str, list[tuple[float, float, int]]] = {}
    totals = {"polls": 0.0, "client cpu": 0.0}
    deadline = time.time() + 900
    for _ in range(count):
        while True:
            try:
                found, polls, cpu = out.get(timeout=1)
                break
            except queue.Empty:
                if time.time() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                    for p in procs:
                        p.kill()
                    raise SystemExit("an ask/tell client failed or hung") from None
        for key, values in found.items():
            rows.setdefault(key, []).extend(values)
        totals["polls"] += polls
        totals["client cpu"] += cpu
    totals["seconds"] = time.perf_counter() - began
    totals["server cpu"] = _server_cpu(server_data) - server_cpu
    for p in procs:
        p.join(60)
    return {key: np.array(values, dtype=float).reshape(-1, 3) for key, values in rows.items()}, totals


def _server_cpu(data: str) -> float:
    """CPU seconds the PostgreSQL server on folder `data` used so far: its postmaster's, its live backends', its ended
    backends' (the postmaster's children's times); NaN where /proc does not tell."""
    def times(pid: str) -> tuple[int, list[int]]:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), [int(v) for v in fields[11:15]]  # the parent; utime, stime, cutime, cstime

    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            postmaster = f.readline().strip()
        total = sum(times(postmaster)[1])
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                parent, used = times(pid)
            except OSError:  # it ended just now
                continue
            if str(parent) == postmaster:
                total += used[0] + used[1]
    except OSError:
        return float("nan")
    return total / os.sysconf("SC_CLK_TCK")


def run_clients(server: Postgres, folder: str, count: int, members: int, steps: int, interval: float,
                claims: int) -> None:
    """Print the `--clients` figures, and fail if a member missed its budget or an interval was recorded twice."""
    claimed = throughput(server.new_database(), "claims", count, claims, start_method="fork")
    url = server.new_database()
    rows, totals = clients(url, count, members, steps, interval, f"{folder}/checkpoints", server_data=server.data)
    print(f"{count} ask/tell clients on one PostgreSQL population of {members} members x {steps} intervals "
          f"(a {interval * 1000:g} ms sleep each; {os.cpu_count()} CPU cores here): {totals['seconds']:.1f} s")
    print(f"  lease claims with {count} processes claiming: {claimed:.0f} claims/s")
    for key in ("lease", "tell", "ready tell", "decision"):
        ms = rows[key]
        print(f"  {key:>10}: p50 {np.percentile(ms[:, 0], 50):7.2f} ms  p99 {np.percentile(ms[:, 0], 99):7.2f} ms  "
              f"({len(ms)} timed; mean {ms[:, 1].mean():5.2f} ms of the client's CPU, {ms[:, 2].mean():4.1f} statements)")
    print(f"  CPU: clients {totals['client cpu']:.1f} s (of it {rows['waiting'][:, 1].sum() / 1000:.1f} s polling for "
          f"a member while the last ones finish, {totals['polls']:.0f} polls), PostgreSQL {totals['server cpu']:.1f} s, "
          f"over {totals['seconds']:.1f} s on {os.cpu_count()} cores")
    store = open_store(url, create=False)
    found = audit(store, "clients", steps, f"{folder}/checkpoints")
    print(f"  members at their budget: {found.completed}/{found.members}; intervals lost {found.lost}, "
          f"recorded twice {found.duplicated + found.unexpected}")
    store.close()
    if found.completed != found.members or found.lost or found.duplicated or found.unexpected:
        raise SystemExit("the clients lost or duplicated work")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=400, help="reports per writer")
    parser.add_argument("--claims", type=int, default=200, help="claim-and-release rounds per writer")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--history", type=int, default=10, help="reports per member before deciding")
    parser.add_argument("--clients", type=int, help="instead: this many ask/tell client processes on one population")
    parser.add_argument("--members", type=int, default=256, help="with --clients: the population")
    parser.add_argument("--steps", type=int, default=12, help="with --clients: intervals per member")
    parser.add_argument("--interval", type=float, default=0.05, help="with --clients: seconds of sleep per interval")
    args = parser.parse_args()
    server = Postgres()
    try:
        with tempfile.TemporaryDirectory() as folder:
            if args.clients:
                run_clients(server, folder, args.clients, args.members, args.steps, args.interval, args.claims)
                return
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
