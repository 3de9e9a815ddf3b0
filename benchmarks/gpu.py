"""The population on a GPU: batched steps, whole runs and RL environment steps, eager, compiled and under bf16.

1. Supervised, mlp_digits and cnn_digits (examples/), populations of 1, 64, 256 and 1,024 members:
   - one batched training step (one minibatch for every member) against one model's step (the
     per-member trainable: an nn.Module and torch.optim, eager, on the same device);
   - member-intervals per second of a whole run of the vectorized engine on a SQLite store in a
     temporary folder (start-up, the memory check, store writes and checkpoints included);
   - peak device memory per member: torch.cuda.max_memory_allocated over the batched step (and
     over the whole run) divided by the members, on CUDA; on the CPU torch keeps no such count,
     so the figure is poptrain.torch.memory's estimate instead (an upper bound), marked as such.
2. RL, the batched CartPole and Acrobot A2C agents (poptrain.torch.rl), 256, 1,024 and 4,096
   members: environment steps per second of one batched update (a rollout of every member's
   environments, then one A2C step) against one agent (a population of one, eager).

Each figure in three modes: eager; compiled (torch.compile; mode="reduce-overhead", i.e. CUDA
graphs, on CUDA only; for RL the rollout is compiled, the A2C step's autograd.grad stays eager;
a whole run uses the engine's `compile` flag), with the compile time (the first call's time less
a steady call's) reported apart; and under bf16 autocast. Eager figures come first, then bf16,
then compiled ones (largest populations first): those not reached within `--budget` seconds are
marked skipped. A figure that raised is kept with its error. The results are written after every
figure to OUT/results.json and OUT/results.md (a table).

    python benchmarks/gpu.py [--out runs/gpu] [--budget 420] [--smoke]

`--smoke` runs every section at toy sizes on the CPU, compiling with the aot_eager backend
(dynamo and AOTAutograd without code generation) and at the largest toy size only, in well under
a minute; the test suite runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
sys.path.insert(0, EXAMPLES)

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import poptrain.torch.compiled  # noqa: E402
import rl_a2c  # noqa: E402
from cnn_digits import CNNDigits, CNNDigitsPopulation, images  # noqa: E402
from mlp_digits import BATCH_SIZE, MLPDigits, MLPDigitsPopulation  # noqa: E402
from poptrain.engines import Vectorized  # noqa: E402
from poptrain.experiment import load_spec  # noqa: E402
from poptrain.torch.memory import estimate  # noqa: E402

MODELS = {"mlp_digits": (MLPDigits, MLPDigitsPopulation, {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}),
          "cnn_digits": (CNNDigits, CNNDigitsPopulation, {"lr": 1e-3, "weight_decay": 1e-5})}
AGENTS = {"CartPole-v1": rl_a2c.CartPolePopulation, "Acrobot-v1": rl_a2c.AcrobotPopulation}
RL_HPARAMS = {"lr": 1e-3, "ent_coef": 0.01, "gae_lambda": 0.95}
MODES = ("eager", "bf16", "compiled")


class Bench:
    """The run's settings, its clock and its results, written out after every figure."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.start = args, time.perf_counter()
        self.device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
        self.cuda = self.device.type == "cuda"
        self.backend = "aot_eager" if args.smoke else "inductor"
        self.compile_mode = "reduce-overhead" if self.cuda else None
        self.rows: list[dict[str, Any]] = []
        self.references: dict[str, float] = {}
        self.meta = {"device": torch.cuda.get_device_name(0) if self.cuda else f"cpu ({os.cpu_count()} cores)",
                     "torch": torch.__version__, "python": platform.python_version(), "smoke": args.smoke,
                     "compile_backend": self.backend, "compile_mode": self.compile_mode, "budget_s": args.budget,
                     "memory": "torch.cuda.max_memory_allocated" if self.cuda else
                     "no CUDA: poptrain.torch.memory's estimate per member (an upper bound), not a measurement"}

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.start)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def autocast(self, mode: str) -> contextlib.AbstractContextManager:
        if mode == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def peak(self) -> Iterator[dict[str, int | None]]:
        """The peak bytes allocated on CUDA within the block (None on the CPU)."""
        out: dict[str, int | None] = {"bytes": None}
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        yield out
        if self.cuda:
            torch.cuda.synchronize()
            out["bytes"] = torch.cuda.max_memory_allocated() - base

    def timed(self, fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
        """(seconds of the first call, median seconds of `repeats` calls after it)."""
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return first, statistics.median(times)

    def record(self, row: dict[str, Any], measure: Callable[[], dict[str, Any]], need: float = 0.0) -> None:
        """Measure one figure (unless the budget is spent), keep it or its error, and write the results out."""
        if self.left() <= need:
            row["skipped"] = "time budget"
        else:
            try:
                row.update(measure())
            except Exception as exc:  # keep going: one figure's failure is a result too
                row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
                traceback.print_exc()
        self.rows.append(row)
        print(line(row), flush=True)
        self.write()

    def write(self) -> None:
        os.makedirs(self.args.out, exist_ok=True)
        self.meta["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        with open(os.path.join(self.args.out, "results.json"), "w") as f:
            json.dump({"meta": self.meta, "results": self.rows}, f, indent=1)
        with open(os.path.join(self.args.out, "results.md"), "w") as f:
            f.write(table(self.meta, self.rows))


def fmt(value: Any, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec) if isinstance(value, (int, float)) else str(value)


def line(row: dict[str, Any]) -> str:
    """One figure as one printed line."""
    what = f"{row['section']:10s} {row['task']:11s} {row['members']:5d} members {row['mode']:8s} {row['figure']:5s}"
    if "skipped" in row or "error" in row:
        return f"{what}: {row.get('skipped') or row.get('error')}"
    if row["figure"] == "step":
        return (f"{what}: batched {fmt(row['batched_ms'])} ms, one model {fmt(row['one_model_ms'])} ms = "
                f"{fmt(row['vs_one_model'])}x one model ({fmt(row['vs_separate'])}x faster than {row['members']} "
                f"separate steps), compile {fmt(row.get('compile_s'))} s, {fmt(row['bytes_per_member'])} B/member "
                f"({row['memory']})")
    if row["figure"] == "run":
        return (f"{what}: {fmt(row['member_intervals_per_s'])} member-intervals/s ({fmt(row['run_s'])} s), "
                f"{fmt(row['bytes_per_member'])} B/member ({row['memory']})")
    return (f"{what}: {fmt(row['env_steps_per_s'])} env-steps/s = {fmt(row['vs_one_agent'])}x one agent "
            f"({fmt(row['one_agent_env_steps_per_s'])}), compile {fmt(row.get('compile_s'))} s, "
            f"{fmt(row['bytes_per_member'])} B/member ({row['memory']})")


def table(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    head = [f"# benchmarks/gpu.py on {meta['device']} (torch {meta['torch']}, smoke={meta['smoke']}, "
            f"{meta['elapsed_s']} s)", "", f"Memory: {meta['memory']}. Compiled: backend {meta['compile_backend']}, "
            f"mode {meta['compile_mode']}.", "",
            "| section | task | members | mode | figure | rate | against one | ms | compile s | bytes/member | note |",
            "|---|---|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["figure"] == "step":
            rate, against, ms = f"{fmt(r.get('vs_separate'))}x separate", fmt(r.get("vs_one_model")), r.get("batched_ms")
        elif r["figure"] == "run":
            rate, against, ms = f"{fmt(r.get('member_intervals_per_s'))} member-intervals/s", "—", None
        else:
            rate, against, ms = f"{fmt(r.get('env_steps_per_s'))} env-steps/s", fmt(r.get("vs_one_agent")), r.get("update_ms")
        note = r.get("skipped") or r.get("error") or "; ".join(filter(None, (r.get("memory"), r.get("note"))))
        head.append(f"| {r['section']} | {r['task']} | {r['members']} | {r['mode']} | {r['figure']} | {rate} | "
                    f"{against} | {fmt(ms)} | {fmt(r.get('compile_s'))} | {fmt(r.get('bytes_per_member'))} | {note} |")
    return "\n".join(head) + "\n"


# --- supervised ---------------------------------------------------------------------------------------

def one_model_step_ms(bench: Bench, task: str) -> float:
    """One eager minibatch step of one member's nn.Module and torch.optim on the device (measured once)."""
    if task not in bench.references:
        single_cls, _, hp = MODELS[task]
        single = single_cls(hp, 0)
        single.model.to(bench.device)  # moves the parameters in place: the optimiser keeps them
        x, y = single.data[0][:BATCH_SIZE].to(bench.device), single.data[1][:BATCH_SIZE].to(bench.device)
        if task == "cnn_digits":
            x = images(x)

        def step() -> None:
            single.optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(single.model(x), y).backward()
            single.optimizer.step()

        bench.references[task] = bench.timed(step, bench.args.repeats)[1] * 1000
    return bench.references[task]


def fallback(bench: Bench, mode: str, measure: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
    """`measure(compile_mode)`; if that mode (CUDA graphs) raised, again in torch.compile's default mode, noted."""
    if mode != "compiled":
        return measure(None)
    try:
        return measure(bench.compile_mode)
    except Exception as exc:
        if bench.compile_mode is None:
            raise
        reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
        return {**measure(None), "note": f"mode {bench.compile_mode} raised ({reason}); default mode instead"}


def batched_step(bench: Bench, task: str, members: int, mode: str, compile_mode: str | None = None) -> dict[str, Any]:
    """One batched minibatch step of `members` members in `mode`, against one model's step."""
    _, batched_cls, hp = MODELS[task]
    with bench.peak() as peak:
        population = batched_cls([hp] * members, list(range(members)), device=str(bench.device))
        if mode == "compiled":
            torch._dynamo.reset()  # each figure compiles afresh, never past dynamo's recompile limit
            population.compile(mode=compile_mode, backend=bench.backend)
        x, y = population.data[0], population.data[1]
        generator = torch.Generator().manual_seed(0)
        batch = torch.stack([torch.randperm(len(x), generator=generator)[:BATCH_SIZE] for _ in range(members)])
        xb, yb = x[batch.to(bench.device)], y[batch.to(bench.device)]
        with bench.autocast(mode):
            first, steady = bench.timed(lambda: population._step(xb, yb, F.cross_entropy), bench.args.repeats)
    if mode == "compiled" and population.compiler.failed:
        raise RuntimeError("torch.compile failed (see the warning): the step ran eagerly")
    one = one_model_step_ms(bench, task)
    row = {"batched_ms": steady * 1000, "one_model_ms": one, "vs_one_model": steady * 1000 / one,
           "vs_separate": members * one / (steady * 1000)}
    if mode == "compiled":
        row["compile_s"] = max(first - steady, 0.0)
    return {**row, **memory_per_member(bench, peak["bytes"], members, batched_cls, hp)}


def memory_per_member(bench: Bench, peak: int | None, members: int, cls: type, hp: dict[str, Any]) -> dict[str, Any]:
    """Peak bytes per member on CUDA; poptrain.torch.memory's estimate (an upper bound) on the CPU."""
    if peak is not None:
        return {"bytes_per_member": peak / members, "memory": "measured peak"}
    key = f"estimate-{cls.__name__}"
    if key not in bench.references:
        bench.references[key] = estimate(cls, [hp], [0, 1], bench.device).per_member
    return {"bytes_per_member": bench.references[key], "memory": "estimate, CPU (no measurement)"}


def whole_run(bench: Bench, task: str, members: int, mode: str, folder: str) -> dict[str, Any]:
    """A whole run of the vectorized engine on a SQLite store: member-intervals per second."""
    _, batched_cls, hp = MODELS[task]
    steps = bench.args.steps
    exp = load_spec(os.path.join(EXAMPLES, f"{task}.toml"), name=f"{task}-{members}-{mode}",
                    storage=f"sqlite:///{folder}/{task}.db", population=members, steps=steps)
    engine = Vectorized(device=str(bench.device), compile=mode == "compiled")
    torch._dynamo.reset()
    with bench.peak() as peak, bench.autocast(mode):
        start = time.perf_counter()
        exp.run(engine=engine)
        elapsed = time.perf_counter() - start
    return {"member_intervals_per_s": members * steps / elapsed, "run_s": elapsed, "steps": steps,
            **memory_per_member(bench, peak["bytes"], members, batched_cls, hp)}


# --- RL -----------------------------------------------------------------------------------------------

def rl_population(bench: Bench, task: str, members: int, mode: str,
                  compile_mode: str | None = None) -> tuple[Any, Callable[[], None]]:
    """A population of `members` agents and one update of it (its uniforms drawn once, up front)."""
    cls = AGENTS[task]
    population = cls([RL_HPARAMS] * members, list(range(members)), device=str(bench.device))
    if mode == "compiled":
        torch._dynamo.reset()
        population._act = torch.compile(population._act, backend=bench.backend, mode=compile_mode, dynamic=False)
    noise = [n[:, 0] for n in population._interval_noise(1)]
    return population, lambda: cls.update(population, *noise)


def rl_update(bench: Bench, task: str, members: int, mode: str, compile_mode: str | None = None) -> dict[str, Any]:
    """Environment steps per second of one batched update of `members` agents, against one agent's (eager)."""
    cls = AGENTS[task]
    per_update = cls.num_envs * cls.rollout
    if f"rl-{task}" not in bench.references:
        _, update = rl_population(bench, task, 1, "eager")
        bench.references[f"rl-{task}"] = per_update / bench.timed(update, bench.args.repeats)[1]
    one = bench.references[f"rl-{task}"]
    with bench.peak() as peak:
        _, update = rl_population(bench, task, members, mode, compile_mode)
        with bench.autocast(mode):
            first, steady = bench.timed(update, bench.args.repeats)
    rate = members * per_update / steady
    row = {"update_ms": steady * 1000, "env_steps_per_s": rate, "one_agent_env_steps_per_s": one,
           "vs_one_agent": rate / one}
    if mode == "compiled":
        row["compile_s"] = max(first - steady, 0.0)
    return {**row, **memory_per_member(bench, peak["bytes"], members, cls, RL_HPARAMS)}


# --- the plan -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("runs", "gpu"), help="folder for results.json and results.md")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which figures are skipped")
    parser.add_argument("--steps", type=int, default=3, help="intervals (epochs) of each whole run")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per figure (their median)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU, compiling with aot_eager")
    args = parser.parse_args(argv)
    sizes, rl_sizes = [1, 64, 256, 1024], [256, 1024, 4096]
    if args.smoke:
        sizes, rl_sizes, args.steps, args.repeats = [1, 4], [2, 4], 2, 2
    bench = Bench(args)
    if bench.backend == "aot_eager":
        poptrain.torch.compiled.BACKEND = "aot_eager"  # the engine's compile flag too
    print(f"device {bench.meta['device']}, torch {torch.__version__}, budget {args.budget:.0f} s, out {args.out}")
    with tempfile.TemporaryDirectory() as folder:
        for mode in MODES:
            order = sorted(sizes, reverse=True) if mode == "compiled" else sizes
            rl_order = sorted(rl_sizes, reverse=True) if mode == "compiled" else rl_sizes
            if mode == "compiled" and args.smoke:  # compiling is most of the smoke run's time
                order, rl_order = order[:1], rl_order[:1]
            need = 60.0 if mode == "compiled" and not args.smoke else 0.0  # a compile can take a minute
            for task in MODELS:
                for members in order:
                    base = {"section": "supervised", "task": task, "members": members, "mode": mode}
                    bench.record({**base, "figure": "step"},
                                 lambda: fallback(bench, mode, lambda m: batched_step(bench, task, members, mode, m)), need)
                    if mode != "compiled" or members == max(sizes):  # a compiled run recompiles: the largest only
                        bench.record({**base, "figure": "run"},
                                     lambda: whole_run(bench, task, members, mode, folder), need)
            for task in AGENTS:
                for members in rl_order:
                    bench.record({"section": "rl", "task": task, "members": members, "mode": mode, "figure": "rl"},
                                 lambda: fallback(bench, mode, lambda m: rl_update(bench, task, members, mode, m)), need)
    bench.write()
    print(f"wrote {os.path.join(args.out, 'results.json')} and results.md in {time.perf_counter() - bench.start:.0f} s")


if __name__ == "__main__":
    main()
