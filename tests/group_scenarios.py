"""Run under torchrun with 2 ranks: what every rank of a process-group member sees, written as JSON to OUT.RANK.

    python -m torch.distributed.run --standalone --nproc_per_node 2 group_scenarios.py URL SCENARIO OUT
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

import torch.distributed as dist

import poptrain
from poptrain.asktell import Connection, GroupConnection

url, scenario, out = sys.argv[1:4]
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
rank = dist.get_rank()
seen: dict = {"rank": rank}
calls: list[str] = []


def state() -> dict:
    calls.append("state")
    dist.barrier()  # a collective inside the state, as FSDP's full-state gather has: every rank must be here
    return {"rank": rank}


try:
    pop = poptrain.connect(url, "group")
    seen["type"] = type(pop).__name__
    seen["store_on_this_rank"] = pop.store is not None
    member = pop.ask()
    seen["member"] = [member.id, member.step, member.hparams, member.seed]
    if scenario == "reduce":  # each rank's score differs: min, then mean, then rank 0's
        seen["decisions"] = [type(pop.tell(member, float(rank + 1), reduce=r)).__name__ for r in ("min", "mean", None)]
    elif scenario == "finish":  # ready every interval, 3 steps: the state is saved on rank 0 with every rank's gathered
        seen["decisions"] = [type(pop.tell(member, 1.0, state=state)).__name__ for _ in range(3)]
        seen["running"] = member.running
    elif scenario == "error":  # rank 0's state raises: every rank gets the error, nobody hangs
        def broken() -> dict:
            if rank == 0:
                raise ValueError("no state today")
            return {}
        try:
            pop.tell(member, 1.0, state=broken)
            pop.tell(member, 1.0, state=broken)
        except Exception as exc:  # noqa: BLE001 - what each rank sees is the point
            seen["error"] = f"{type(exc).__name__}: {exc}"
    elif scenario == "lost":  # the lease lapses (rank 0 stops renewing) and another process takes the member
        if rank == 0:
            pop.inner._heartbeat.stop()
            time.sleep(2.5)
            thief = Connection(pop.inner.store, "group", "thief")
            taken = thief.ask(wait=False)
            seen["taken_by_thief"] = taken.id if taken else None
        dist.barrier()
        seen["decisions"] = [type(pop.tell(member, 1.0)).__name__]
        seen["running"] = member.running
    elif scenario == "quick":  # ready every 3 steps: two quick tells (one collective each), then a ready one
        seen["decisions"] = [type(pop.tell(member, float(rank + 1), state=state, reduce="mean")).__name__
                             for _ in range(3)]
        seen["record"] = [member.step, member.record.step, member.record.version, member.record.last_score,
                          member.record.last_ready]
    elif scenario == "lost_quick":  # the lease is taken over before a quick tell: rank 0's report of it (at the
        # next call) finds the lease lost, its next gather says so, and both ranks get Released at the call after
        if rank == 0:
            pop.inner._heartbeat.stop()
            time.sleep(2.5)
            taken = Connection(pop.inner.store, "group", "thief").ask(wait=False)
            seen["taken_by_thief"] = taken.id if taken else None
        dist.barrier()
        seen["decisions"], seen["running_before"] = [], []
        for _ in range(3):
            seen["running_before"].append(member.running)
            seen["decisions"].append(type(pop.tell(member, 1.0, reduce="max")).__name__)
        seen["running"] = member.running
    elif scenario in ("bad_score", "bad_score_rank0"):  # a result that is not a score at a quick tell: both ranks
        # return Continue, then both raise at the next tell, nobody hangs
        if scenario == "bad_score":  # rank 1's, under reduce: it counts
            told, reduce = ("oops" if rank == 1 else 1.0), "mean"
        else:  # rank 0's, without reduce (rank 1's result is not read then)
            told, reduce = ("oops" if rank == 0 else None), None
        seen["decisions"] = [type(pop.tell(member, told, reduce=reduce)).__name__]
        try:
            pop.tell(member, 1.0, reduce=reduce)
        except Exception as exc:  # noqa: BLE001 - what each rank sees is the point
            seen["error"] = f"{type(exc).__name__}: {exc}"
    elif scenario == "quick_rank0":  # without reduce: quick tells store rank 0's score; rank 1 may tell anything
        seen["decisions"] = [type(pop.tell(member, 2.0 if rank == 0 else None)).__name__ for _ in range(3)]
        seen["record"] = [member.step, member.record.last_score]
    seen["calls"] = calls
    pop.close()
    seen["group"] = isinstance(pop, GroupConnection)
finally:
    with open(f"{out}.{rank}", "w") as f:
        json.dump(seen, f)
dist.destroy_process_group()
os._exit(0)  # gloo's threads may abort in the interpreter's own teardown, which this test is not about
