"""A fully sharded (FSDP2) loop you own, whose ranks together are one member of a population.

    poptrain create examples/fsdp_own_loop.toml --storage sqlite:///runs/fsdp.db     # once
    torchrun --standalone --nproc_per_node 2 examples/fsdp_own_loop.py sqlite:///runs/fsdp.db   # as many jobs as you like

Every rank runs this same file and holds a shard of the model and of the optimiser state. At a
checkpoint the `state` callable gathers the full state (`poptrain.torch.sharded.full_state`, a
collective that poptrain runs on every rank at once); rank 0 receives it and writes it. An
exploit's copied full state reaches every rank, and `load_full_state` puts each rank's shard of
it in place. Runs on GPUs with NCCL (one per rank) or on the CPU with gloo (`--cpu`).
"""

import argparse
import datetime
import hashlib
import json
import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

import poptrain
from poptrain.torch.sharded import full_state, load_full_state

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("storage", help="the store's URL, e.g. sqlite:///runs/fsdp.db")
parser.add_argument("--name", default="fsdp", help="the experiment's name")
parser.add_argument("--batches", type=int, default=20, help="optimiser steps per interval")
parser.add_argument("--cpu", action="store_true", help="train on the CPU with gloo even if a GPU is present")
parser.add_argument("--trace", help="append one JSON line per interval to TRACE.RANK (for tests)")
parser.add_argument("--timeout", type=float, default=120.0, help="seconds any collective may wait")
args = parser.parse_args()

# torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
gpu = torch.cuda.is_available() and not args.cpu
if gpu:
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl" if gpu else "gloo", timeout=datetime.timedelta(seconds=args.timeout))
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device("cuda", torch.cuda.current_device()) if gpu else torch.device("cpu")
torch.set_num_threads(1)

# a regression task; each rank trains and validates on its own shard of the data
generator = torch.Generator().manual_seed(0)
x = torch.randn(1024, 8, generator=generator)
y = torch.sin(x @ torch.randn(8, 1, generator=generator)) + 0.1 * torch.randn(1024, 1, generator=generator)
train_x, train_y = x[:768][rank::world].to(device), y[:768][rank::world].to(device)
val_x, val_y = x[768:][rank::world].to(device), y[768:][rank::world].to(device)


def fingerprint(state: dict) -> str:
    """A hash of a full state's tensors (weights and optimiser buffers; hyperparameters left out)."""
    tensors = [(f"model.{k}", v) for k, v in state["model"].items()]
    tensors += [(f"optimizer.{p}.{k}", v) for p, s in state["optimizer"]["state"].items() for k, v in s.items()]
    digest = hashlib.sha1()
    for key, tensor in sorted(tensors):
        digest.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def note(**entry: object) -> None:
    if args.trace:
        with open(f"{args.trace}.{rank}", "a") as f:
            f.write(json.dumps(entry) + "\n")


pop = poptrain.connect(args.storage, args.name)  # on every rank: the ranks form one member
while (member := pop.ask()) is not None:
    torch.manual_seed(member.seed)  # the same seed on every rank, so the ranks start from the same weights
    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                                torch.nn.Linear(64, 1)).to(device)
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)  # each rank keeps its shard of every layer's parameters
    fully_shard(model)
    opt = torch.optim.SGD(model.parameters(), lr=member.hparams["lr"], momentum=member.hparams["momentum"])
    if member.state is not None:  # the same full state reaches every rank
        load_full_state(model, opt, member.state)

    def set_hparams(hparams: dict) -> None:
        for group in opt.param_groups:
            group["lr"], group["momentum"] = hparams["lr"], hparams["momentum"]

    set_hparams(member.hparams)
    while member.running:
        model.train()
        for i in range(args.batches):
            batch = torch.randint(0, len(train_x), (32,), generator=torch.Generator().manual_seed(member.step * 997 + i))
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(train_x[batch]), train_y[batch]).backward()  # FSDP reduces the gradients
            opt.step()
        with torch.no_grad():
            score = -torch.nn.functional.mse_loss(model(val_x), val_y).item()
        # state= gathers on every rank; rank 0's full state is the one saved
        decision = pop.tell(member, score, state=lambda: full_state(model, opt), reduce="mean")
        if isinstance(decision, poptrain.Exploit):  # load the source's full state into this member's shards, then explore
            load_full_state(model, opt, decision.state)
            set_hparams(member.hparams)
        if args.trace:  # the full state as it is now, gathered on both ranks (the test compares them)
            note(member=member.id, step=member.step, hparams=member.hparams,
                 state=fingerprint(full_state(model, opt, everywhere=True)), decision=type(decision).__name__,
                 source=getattr(decision, "source", None), pid=os.getpid())
pop.close()
dist.destroy_process_group()
