"""A 2-rank DDP loop (gloo, CPU) as one poptrain member, against the same loop without poptrain.

Both sides run the same members one after the other (same seeds, the same number of intervals of
about 50 ms of DDP training each, an evaluation after each) in 2 processes this script spawns,
in alternation. The poptrain side is an own loop: `connect`, `ask`, `tell(state=..., reduce=
"mean")` over the process group, the population in SQLite under a temporary folder, ready every
2 intervals, truncation. The timer runs on each rank from a barrier after the group starts to a
barrier after the last interval (connect and close inside it, process start-up and a warm-up step outside;
the objects start-up made are frozen out of garbage collection on both sides). The
ratio is poptrain's time / bare time; the collective cost is the time each rank spends inside
`tell`, per interval.

    python benchmarks/distributed.py [--repeats 3] [--interval 0.05 | --batches 12] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import multiprocessing as mp
import os
import socket
import statistics
import tempfile
import time

import poptrain

TIMEOUT = 60.0  # seconds any collective, and each run's processes, may wait


def build(seed: int):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.Tanh(), torch.nn.Linear(256, 256), torch.nn.Tanh(),
                               torch.nn.Linear(256, 1))


def data(rank: int, world: int):
    """A regression task; each rank trains and validates on its own shard."""
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 32, generator=generator)
    y = torch.sin(x @ torch.randn(32, 1, generator=generator))
    return x[:1536][rank::world], y[:1536][rank::world], x[1536:][rank::world], y[1536:][rank::world]


def interval(model, opt, train_x, train_y, step: int, batches: int) -> None:
    """One interval of training: `batches` DDP optimiser steps of 64 examples."""
    import torch

    for i in range(batches):
        batch = torch.randint(0, len(train_x), (64,), generator=torch.Generator().manual_seed(step * 997 + i))
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(train_x[batch]), train_y[batch]).backward()
        opt.step()


def rank_main(rank: int, port: int, mode: str, url: str, population: int, steps: int, batches: int,
              out: str) -> None:
    """One rank of one run: `mode` "bare" trains the members without poptrain, "poptrain" through ask/tell."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=TIMEOUT))
    train_x, train_y, val_x, val_y = data(rank, 2)
    in_tell, in_ask, asks, intervals, in_connect, in_close = 0.0, 0.0, 0, 0, 0.0, 0.0
    at_ready = [0.0, 0]  # time inside tell at ready steps (a checkpoint and a decision), and how many
    # warm up outside the timer: the first DDP model and optimiser step import and set up for seconds
    model = DistributedDataParallel(build(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    interval(model, opt, train_x, train_y, 0, 5)
    # torch's objects from start-up, frozen on both sides: otherwise a few full garbage collections of 80 ms each
    # (as long as an interval and a half) land at random in every run, the same cost on each side, and blur the ratio
    gc.collect()
    gc.freeze()
    dist.barrier()
    start = time.perf_counter()
    if mode == "calibrate":  # one interval of the warmed-up model, timed
        interval(model, opt, train_x, train_y, 1, batches)
        intervals = 1
    elif mode == "bare":
        for seed in range(population):
            model = DistributedDataParallel(build(seed))
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            for step in range(steps):
                interval(model, opt, train_x, train_y, step, batches)
                with torch.no_grad():
                    torch.nn.functional.mse_loss(model.module(val_x), val_y).item()
                intervals += 1
    else:
        connected = time.perf_counter()
        pop = poptrain.connect(url, "ddp")
        in_connect = time.perf_counter() - connected
        while True:
            asked = time.perf_counter()
            member = pop.ask()
            in_ask, asks = in_ask + time.perf_counter() - asked, asks + 1
            if member is None:
                break
            model = DistributedDataParallel(build(member.seed))
            opt = torch.optim.SGD(model.parameters(), lr=member.hparams["lr"], momentum=0.9)
            if member.state is not None:
                model.module.load_state_dict(member.state["model"])
                opt.load_state_dict(member.state["opt"])
            while member.running:
                interval(model, opt, train_x, train_y, member.step, batches)
                with torch.no_grad():
                    score = -torch.nn.functional.mse_loss(model.module(val_x), val_y).item()
                told = time.perf_counter()
                decision = pop.tell(member, score, state=lambda: {"model": model.module.state_dict(),
                                                                  "opt": opt.state_dict()}, reduce="mean")
                elapsed = time.perf_counter() - told
                in_tell += elapsed
                if member.step % 2 == 0:  # the step just told
                    at_ready = [at_ready[0] + elapsed, at_ready[1] + 1]
                if isinstance(decision, poptrain.Exploit):
                    model.module.load_state_dict(decision.state["model"])
                    opt.load_state_dict(decision.state["opt"])
                for group in opt.param_groups:
                    group["lr"] = member.hparams["lr"]
                intervals += 1
        closing = time.perf_counter()
        pop.close()
        in_close = time.perf_counter() - closing
    dist.barrier()
    seconds = time.perf_counter() - start
    with open(os.path.join(out, f"{mode}.{rank}.json"), "w") as f:
        json.dump({"seconds": seconds, "in_tell": in_tell, "in_ask": in_ask, "asks": asks, "intervals": intervals,
                   "at_ready": at_ready, "in_connect": in_connect, "in_close": in_close}, f)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(mode: str, folder: str, tag: str, population: int, steps: int, batches: int) -> list[dict]:
    """One run of 2 spawned ranks; what each rank measured."""
    url = f"sqlite:///{folder}/{tag}.db"
    if mode == "poptrain":
        poptrain.Experiment(name="ddp", trainable=None, metric="neg_mse", mode="max",
                            space={"lr": poptrain.LogUniform(0.001, 0.1)}, population=population, steps=steps,
                            ready=poptrain.Every(2), exploit=poptrain.Truncation(0.25), lease=30.0, storage=url,
                            seed=0).create()
    out = os.path.join(folder, tag)
    os.makedirs(out)
    port = free_port()
    procs = [mp.get_context("spawn").Process(target=rank_main, args=(r, port, mode, url, population, steps, batches,
                                                                       out)) for r in (0, 1)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + TIMEOUT + population * steps * 2.0
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
    assert all(p.exitcode == 0 for p in procs), f"{mode} run {tag}: exit codes {[p.exitcode for p in procs]}"
    results = []
    for r in (0, 1):
        with open(os.path.join(out, f"{mode}.{r}.json")) as f:
            results.append(json.load(f))
    assert all(r["intervals"] == population * steps for r in results), results
    return results


def calibrate(folder: str, target: float) -> int:
    """Batches per interval for about `target` seconds of DDP training, timed in a run of 2 ranks."""
    ranks = run("calibrate", folder, "calibrate", 1, 1, 20)
    return max(1, round(target / (max(r["seconds"] for r in ranks) / 20)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds of training per interval (target)")
    parser.add_argument("--batches", type=int, help="DDP batches per interval (default: timed to make --interval)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run of each, 2 batches an interval")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.population, args.steps, args.batches = 1, 2, 4, 2
    intervals = args.population * args.steps
    bare, pbt, tell, ask, ready, other, ends = [], [], ([], []), [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        batches = args.batches or calibrate(folder, args.interval)
        print(f"2 ranks (gloo, CPU), {args.population} members x {args.steps} intervals of {batches} DDP batches, "
              f"repeats={args.repeats} cpus={os.cpu_count()}")
        for i in range(args.repeats):  # alternating, so drift in the machine's load hits both sides
            bare.append(max(r["seconds"] for r in run("bare", folder, f"bare-{i}", args.population, args.steps,
                                                      batches)))
            ranks = run("poptrain", folder, f"poptrain-{i}", args.population, args.steps, batches)
            pbt.append(max(r["seconds"] for r in ranks))
            for rank, r in enumerate(ranks):
                tell[rank].append(r["in_tell"] / r["intervals"])
            ask.append(ranks[0]["in_ask"] / ranks[0]["asks"])
            ends.append((ranks[0]["in_connect"], ranks[0]["in_close"], ranks[0]["asks"]))
            seconds, count = ranks[0]["at_ready"]
            ready.append(seconds / count)
            other.append((ranks[0]["in_tell"] - seconds) / (ranks[0]["intervals"] - count))
    b, p = statistics.median(bare), statistics.median(pbt)
    print(f"interval: {b / intervals * 1000:.1f} ms of DDP training and evaluation (bare)")
    print(f"bare {b:.2f} s, poptrain {p:.2f} s, ratio poptrain/bare {p / b:.2f}x (target <= 1.1x); "
          f"runs: bare {', '.join(f'{s:.2f}' for s in bare)}, poptrain {', '.join(f'{s:.2f}' for s in pbt)}")
    print(f"inside tell per interval: rank 0 {statistics.median(tell[0]) * 1000:.1f} ms, "
          f"rank 1 {statistics.median(tell[1]) * 1000:.1f} ms; inside ask: {statistics.median(ask) * 1000:.1f} ms "
          f"per call on rank 0")
    print(f"inside tell on rank 0: {statistics.median(ready) * 1000:.1f} ms at a ready step (a checkpoint and a "
          f"decision), {statistics.median(other) * 1000:.1f} ms at the others (a report)")
    print(f"connect {statistics.median(e[0] for e in ends) * 1000:.1f} ms, close "
          f"{statistics.median(e[1] for e in ends) * 1000:.1f} ms, {ends[0][2]} asks (rank 0, once a run)")
    print(f"ratio of each alternating pair: {', '.join(f'{q / c:.2f}x' for c, q in zip(bare, pbt))}")


if __name__ == "__main__":
    main()
