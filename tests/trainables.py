"""Small trainables for engine tests: cheap, deterministic, and able to misbehave on purpose."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from poptrain import Trainable


class Quadratic(Trainable):
    """Gradient ascent on 1 - (x - 3)^2 with step size `lr`; optional sleep per interval."""

    sleep = 0.0

    def __init__(self, hparams: dict[str, Any], seed: int) -> None:
        super().__init__(hparams, seed)
        self.x = float(np.random.default_rng(seed).uniform(-1, 1))
        self.trained = 0
        self.sleep = float(os.environ.get("POPTRAIN_TEST_SLEEP", self.sleep))
        self.log = os.environ.get("POPTRAIN_TEST_LOG")

    def train(self) -> None:
        if self.sleep:
            time.sleep(self.sleep)
        self.x += self.hparams["lr"] * (-2.0 * (self.x - 3.0))
        self.trained += 1
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{self.seed} {self.trained}\n")

    def evaluate(self) -> dict[str, float]:
        return {"score": 1.0 - (self.x - 3.0) ** 2}

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x, "trained": self.trained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.trained = state["x"], state["trained"]


class AlwaysRaises(Quadratic):
    """Raises in train() when its hyperparameter `bad` is 1: a user's bug."""

    def train(self) -> None:
        if self.hparams.get("bad") == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        super().train()


class RaisesOnce(Quadratic):
    """Raises the first time any member of this process reaches interval 5: a transient error."""

    raised: set[int] = set()

    def train(self) -> None:
        if self.trained == 4 and self.seed not in RaisesOnce.raised:
            RaisesOnce.raised.add(self.seed)
            raise OSError("transient I/O error (simulated)")
        super().train()


class NanScore(Quadratic):
    """Scores NaN while its hyperparameter `lr` is above 0.4."""

    def evaluate(self) -> dict[str, float]:
        return {"score": float("nan") if self.hparams["lr"] > 0.4 else super().evaluate()["score"]}


class BadState(Quadratic):
    """Its state cannot be saved (a user's bug in state_dict)."""

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x, "handle": (lambda: None)}  # a lambda cannot be pickled


class BadSetHparams(Quadratic):
    """Rejects the hyperparameters an exploit gives it."""

    def set_hparams(self, hparams: dict[str, Any]) -> None:
        if self.trained > 0:
            raise ValueError("cannot change lr mid-run")
        super().set_hparams(hparams)


class TensorScore(Quadratic):
    """Returns numpy and torch scalars, as real evaluate() methods do."""

    def evaluate(self) -> dict[str, Any]:
        import torch

        value = super().evaluate()["score"]
        return {"score": torch.tensor(value), "loss": np.float32(-value), "note": "ok"}


class ListMetric(Quadratic):
    """Returns a list as a metric: not storable."""

    def evaluate(self) -> dict[str, Any]:
        return {"score": super().evaluate()["score"], "history": [1, 2, 3]}


class CrashesProcess(Quadratic):
    """Kills its whole process when `bad` is 1, as a segfault or the out-of-memory killer would."""

    def train(self) -> None:
        if self.hparams.get("bad") == 1:
            os._exit(1)
        super().train()


class HparamScore(Quadratic):
    """Scores depend only on the hyperparameters, so every engine sees the same numbers."""

    def evaluate(self) -> dict[str, float]:
        return {"score": -((self.hparams["lr"] - 0.1) ** 2)}


class HparamScorePopulation:
    """The batched twin of HparamScore: bookkeeping only, no model."""

    hparams = ("lr",)

    def __init__(self, hparams: list[dict], seeds: list[int], device: str = "cpu") -> None:
        self.lr = [h["lr"] for h in hparams]
        self.copies: list[tuple[int, int]] = []

    def train(self) -> None:
        pass

    def evaluate(self) -> list[dict[str, float]]:
        return [{"score": -((lr - 0.1) ** 2)} for lr in self.lr]

    def set_hparams(self, member: int, hparams: dict) -> None:
        self.lr[member] = hparams["lr"]

    def copy_members(self, dsts: list[int], srcs: list[int]) -> None:
        self.copies += list(zip(dsts, srcs))

    def state_dict(self) -> dict:
        return {"lr": list(self.lr)}

    def load_state_dict(self, state: dict) -> None:
        self.lr = list(state["lr"])


HparamScore.vectorized = HparamScorePopulation


class StepLog(Quadratic):
    """Logs 'seed step' for every interval it trains; its own step survives copying another member's state.

    The state carries its owner's seed: loading one's own checkpoint restores the step, while an
    exploit (another member's state) keeps it, so each log line names the member's real step.
    """

    def __init__(self, hparams: dict[str, Any], seed: int) -> None:
        super().__init__(hparams, seed)
        self.step = 0

    def train(self) -> None:
        if self.sleep:
            time.sleep(self.sleep)
        self.x += self.hparams["lr"] * (-2.0 * (self.x - 3.0))
        self.trained += 1
        self.step += 1
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{self.seed} {self.step}\n")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "owner": self.seed, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state["owner"] == self.seed:
            self.step = state["step"]


class Tied(Quadratic):
    """Every member scores the same at every step: ties for the exploit strategy to break."""

    def evaluate(self) -> float:
        return 1.0


class HangsAtTop(Quadratic):
    """A member whose lr is at the top of the space (0.3) never returns from train(): a stuck interval."""

    def train(self) -> None:
        if self.hparams["lr"] >= 0.3:
            time.sleep(3600)
        super().train()


def _note_pid() -> None:
    pids = os.environ.get("POPTRAIN_TEST_PIDS")
    if pids:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")


class Traced(StepLog):
    """StepLog that also notes the pid of the process training each interval (POPTRAIN_TEST_PIDS), with a batched twin.

    Its scores depend only on its seed, hyperparameters and the state it copied, so every engine
    sees the same numbers for the same decisions.
    """

    def train(self) -> None:
        super().train()
        _note_pid()


class TracedPopulation:
    """The batched twin of Traced: the same arithmetic per member, the same log lines, one x per member."""

    hparams: tuple[str, ...] = ("lr",)

    def __init__(self, hparams: list[dict], seeds: list[int], device: str = "cpu") -> None:
        self.hp = [dict(h) for h in hparams]
        self.seeds = list(seeds)
        self.x = [float(np.random.default_rng(s).uniform(-1, 1)) for s in seeds]
        self.trained = [0] * len(seeds)
        self.step = [0] * len(seeds)
        self.sleep = float(os.environ.get("POPTRAIN_TEST_SLEEP", 0.0)) * len(seeds)  # the work of every member
        self.log = os.environ.get("POPTRAIN_TEST_LOG")

    def train(self) -> None:
        if self.sleep:
            time.sleep(self.sleep)
        for i, h in enumerate(self.hp):
            self.x[i] += h["lr"] * (-2.0 * (self.x[i] - 3.0))
            self.trained[i] += 1
            self.step[i] += 1
        if self.log:
            with open(self.log, "a") as f:
                f.writelines(f"{seed} {step}\n" for seed, step in zip(self.seeds, self.step))
        _note_pid()

    def evaluate(self) -> list[dict[str, float]]:
        return [{"score": 1.0 - (x - 3.0) ** 2} for x in self.x]

    def set_hparams(self, member: int, hparams: dict) -> None:
        self.hp[member] = dict(hparams)

    def copy_members(self, dsts: list[int], srcs: list[int]) -> None:
        self.import_members(dsts, self.export_members(srcs))  # every copy reads the state from before any copy

    def export_members(self, srcs: list[int]) -> list[tuple[float, int]]:
        return [(self.x[s], self.trained[s]) for s in srcs]

    def import_members(self, dsts: list[int], exported: list[tuple[float, int]]) -> None:
        for d, (x, trained) in zip(dsts, exported):
            self.x[d], self.trained[d] = x, trained  # a member's own step stays, as StepLog's does

    def state_dict(self) -> dict:
        return {"x": list(self.x), "trained": list(self.trained), "step": list(self.step)}

    def load_state_dict(self, state: dict) -> None:
        self.x, self.trained, self.step = list(state["x"]), list(state["trained"]), list(state["step"])


Traced.vectorized = TracedPopulation


class TracedRaises(Traced):
    """Raises in train() while its hyperparameter `bad` is 1: a user's bug, on every engine."""

    def train(self) -> None:
        if self.hparams.get("bad") == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        super().train()


class TracedRaisesPopulation(TracedPopulation):
    """The batched twin of TracedRaises: the batched step raises while any member's `bad` is 1."""

    hparams = ("lr", "bad")

    def train(self) -> None:
        if any(h.get("bad") == 1 for h in self.hp):
            raise RuntimeError("CUDA out of memory (simulated)")
        super().train()


TracedRaises.vectorized = TracedRaisesPopulation


class TracedObjectives(Traced):
    """Traced with a second metric, its step size (lr, to be kept small): two objectives for multi-objective PBT."""

    def evaluate(self) -> dict[str, float]:
        return {**super().evaluate(), "step_size": float(self.hparams["lr"])}


class TracedObjectivesPopulation(TracedPopulation):
    """The batched twin of TracedObjectives."""

    def evaluate(self) -> list[dict[str, float]]:
        return [{**r, "step_size": float(h["lr"])} for r, h in zip(super().evaluate(), self.hp)]


TracedObjectives.vectorized = TracedObjectivesPopulation


class DDPRegression(Trainable):
    """A DistributedDataParallel MLP: each rank of the member's group trains on its shard of a regression task.

    With POPTRAIN_TEST_LOG set, every rank appends what it holds at each train start (its
    group, rank, seed, lr and a hash of its weights) to LOG.<group>.<rank>, where the group is
    rank 0's pid.
    """

    def __init__(self, hparams: dict[str, Any], seed: int) -> None:
        super().__init__(hparams, seed)
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        self.rank, world = dist.get_rank(), dist.get_world_size()
        torch.manual_seed(seed)
        self.model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(),
                                                                 torch.nn.Linear(16, 1)))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=hparams["lr"])
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(256, 4, generator=generator)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.x, self.y = x[self.rank::world], y[self.rank::world]
        self.log = os.environ.get("POPTRAIN_TEST_LOG")
        pids: list[Any] = [None] * world
        dist.all_gather_object(pids, os.getpid())
        self.group = pids[0]  # rank 0's process names the group

    def train(self) -> None:
        import torch

        if self.log:
            with open(f"{self.log}.{self.group}.{self.rank}", "a") as f:
                f.write(f"{self.seed} {self.opt.param_groups[0]['lr']!r} {weights_hash(self.model.module.state_dict())} "
                        f"{os.getpid()}\n")
        for _ in range(5):
            self.opt.zero_grad()
            torch.nn.functional.mse_loss(self.model(self.x), self.y).backward()
            self.opt.step()

    def evaluate(self) -> float:
        import torch

        with torch.no_grad():
            return -torch.nn.functional.mse_loss(self.model.module(self.x), self.y).item()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.module.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.module.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def set_hparams(self, hparams: dict[str, Any]) -> None:
        super().set_hparams(hparams)
        for group in self.opt.param_groups:
            group["lr"] = hparams["lr"]


def weights_hash(state: dict[str, Any]) -> str:
    """A short hash of a module's state dict (equal states, equal hashes)."""
    import hashlib

    return hashlib.sha1(b"".join(state[k].detach().contiguous().numpy().tobytes() for k in sorted(state))).hexdigest()[:12]


def ddp_function(member: Any) -> None:
    """DDPRegression's job as a function trainable: every rank of the group runs this loop on the same member."""
    model = DDPRegression(dict(member.hparams), member.seed)
    if member.state is not None:
        model.load_state_dict(member.state)
    model.set_hparams(dict(member.hparams))
    while member.running:
        model.train()
        decision = member.report(model.evaluate(), state=model.state_dict, reduce="mean")
        if decision.__class__.__name__ == "Exploit":
            model.load_state_dict(decision.state)
            model.set_hparams(dict(member.hparams))


class NodeLog(StepLog):
    """StepLog whose lines also name the Ray node that trained the interval ('seed step node')."""

    def train(self) -> None:
        log, self.log = self.log, None
        super().train()
        self.log = log
        if log:
            import ray

            with open(log, "a") as f:
                f.write(f"{self.seed} {self.step} {ray.get_runtime_context().get_node_id()}\n")


class HangsOnce(NodeLog):
    """Hangs in train() once in the whole run: the first interval to start after POPTRAIN_TEST_HANG's file appears."""

    def train(self) -> None:
        marker = os.environ.get("POPTRAIN_TEST_HANG")
        if marker:
            try:
                os.remove(marker)  # one process wins; no other interval hangs
            except FileNotFoundError:
                pass
            else:
                time.sleep(3600)
        super().train()


class Timed(StepLog):
    """StepLog that also records who trained each interval and when: 'seed step pid start end' lines in
    the file POPTRAIN_TEST_INTERVALS names, so a test can tell whether two processes trained one member at once."""

    def train(self) -> None:
        start = time.time()
        super().train()
        path = os.environ.get("POPTRAIN_TEST_INTERVALS")
        if path:
            with open(path, "a") as f:
                f.write(f"{self.seed} {self.step} {os.getpid()} {start!r} {time.time()!r}\n")
