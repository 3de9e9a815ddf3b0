"""A DistributedDataParallel loop you own, whose ranks together are one member of a population.

    poptrain create examples/ddp_own_loop.toml --storage sqlite:///runs/ddp.db     # once
    torchrun --standalone --nproc_per_node 2 examples/ddp_own_loop.py sqlite:///runs/ddp.db   # as many jobs as you like

Every rank runs this same file. `poptrain.connect` sees that torch.distributed is initialised
and makes the job's ranks one member: each `ask` and `tell` returns the same member, the same
hyperparameters and the same decision on every rank; rank 0 alone talks to the store and writes
the checkpoints. The score told is the mean of the ranks' validation scores (`reduce="mean"`).
"""

import argparse
import datetime
import hashlib
import json
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import poptrain

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("storage", help="the store's URL, e.g. sqlite:///runs/ddp.db")
parser.add_argument("--name", default="ddp", help="the experiment's name")
parser.add_argument("--batches", type=int, default=20, help="optimiser steps per interval")
parser.add_argument("--sleep", type=float, default=0.0, help="seconds of extra work per interval (for tests)")
parser.add_argument("--trace", help="append one JSON line per interval to TRACE.RANK (for tests)")
parser.add_argument("--timeout", type=float, default=120.0, help="seconds any collective may wait")
args = parser.parse_args()

# torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; gloo runs on the CPU
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
rank, world = dist.get_rank(), dist.get_world_size()
torch.set_num_threads(1)

# a regression task; each rank trains and validates on its own shard of the data
generator = torch.Generator().manual_seed(0)
x = torch.randn(1024, 8, generator=generator)
y = torch.sin(x @ torch.randn(8, 1, generator=generator)) + 0.1 * torch.randn(1024, 1, generator=generator)
train_x, train_y = x[:768][rank::world], y[:768][rank::world]
val_x, val_y = x[768:][rank::world], y[768:][rank::world]


def fingerprint(model: torch.nn.Module) -> str:
    """A hash of the weights: equal on every rank when the ranks hold the same model."""
    return hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()[:16]


def note(**entry: object) -> None:
    if args.trace:
        with open(f"{args.trace}.{rank}", "a") as f:
            f.write(json.dumps(entry) + "\n")


pop = poptrain.connect(args.storage, args.name)  # on every rank: the ranks form one member
while (member := pop.ask()) is not None:
    torch.manual_seed(member.seed)  # the same seed on every rank, so the ranks start from the same weights
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=member.hparams["lr"], momentum=member.hparams["momentum"])
    if member.state is not None:  # the same state reaches every rank
        model.module.load_state_dict(member.state["model"])
        opt.load_state_dict(member.state["opt"])

    def state() -> dict:
        return {"model": model.module.state_dict(), "opt": opt.state_dict()}

    def set_hparams(hparams: dict) -> None:
        for group in opt.param_groups:
            group["lr"], group["momentum"] = hparams["lr"], hparams["momentum"]

    set_hparams(member.hparams)
    while member.running:
        model.train()
        for i in range(args.batches):
            batch = torch.randint(0, len(train_x), (32,), generator=torch.Generator().manual_seed(member.step * 997 + i))
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(train_x[batch]), train_y[batch]).backward()  # DDP averages the gradients
            opt.step()
        time.sleep(args.sleep)
        with torch.no_grad():
            score = -torch.nn.functional.mse_loss(model.module(val_x), val_y).item()
        decision = pop.tell(member, score, state=state, reduce="mean")
        if isinstance(decision, poptrain.Exploit):  # copy the source into this model on every rank, then explore
            model.module.load_state_dict(decision.state["model"])
            opt.load_state_dict(decision.state["opt"])
            set_hparams(member.hparams)
        note(member=member.id, step=member.step, hparams=member.hparams, weights=fingerprint(model),
             decision=type(decision).__name__, source=getattr(decision, "source", None), pid=os.getpid())
pop.close()
dist.destroy_process_group()
