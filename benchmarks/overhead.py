"""PBT's overhead: a PBT run on the local engine against the same training without PBT.

Both sides train the same members (same seeds and initial hyperparameters) for the same number
of intervals, evaluating after each, on the same number of worker processes, in this run. The
ratio is PBT wall-clock time / bare wall-clock time; 1.0 would be free.

The short run (mlp_digits, 8 members x 30 epochs) includes start-up: poptrain's local engine
from `run()` to its result (starting its fork server and workers, which import torch), against
a bare pool of processes forked from this one after it imported torch, the trainable and what a
first optimiser step imports, so their start costs nothing.

    python benchmarks/overhead.py [--workers 2] [--repeats 3] [--only short]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
sys.path.insert(0, EXAMPLES)

from poptrain.engines import Local  # noqa: E402
from poptrain.experiment import load_spec  # noqa: E402
from poptrain.trainable import resolve_trainable  # noqa: E402

WORKLOADS = {
    # name: (spec file, overrides)
    "toy_quadratic": ("toy_quadratic.toml", {"steps": 200}),
    "mlp_digits": ("mlp_digits.toml", {"steps": 60, "population": 8}),
}


def bare_worker(trainable: str, paths: list[str], members: list[tuple[dict, int]], steps: int, threads: int) -> None:
    """Train and evaluate a share of the members for `steps` intervals: no store, no PBT."""
    cls = resolve_trainable(trainable, paths)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    live = [cls(dict(h), seed) for h, seed in members]
    for _ in range(steps):  # round robin, as a worker with several members would
        for member in live:
            member.train()
            member.evaluate()


def in_processes(method: str, target, args: list[tuple]) -> None:
    """Run `target` once per argument tuple, each in its own process, and wait for all of them."""
    procs = [mp.get_context(method).Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)


def run_bare(exp, workers: int, method: str = "spawn") -> float:
    members = [(m.hparams, m.seed) for m in exp.initial_members()]
    shares = [members[i::workers] for i in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    start = time.perf_counter()
    in_processes(method, bare_worker, [(exp.trainable, exp.paths, s, exp.steps, threads) for s in shares])
    return time.perf_counter() - start


def run_pbt(spec: str, overrides: dict, workers: int, folder: str, tag: str) -> tuple[float, int]:
    exp = load_spec(spec, storage=f"sqlite:///{folder}/{tag}.db", **overrides)
    start = time.perf_counter()
    result = exp.run(engine=Local(workers=workers))
    elapsed = time.perf_counter() - start
    return elapsed, len(result.events())


def own_loop(url: str, name: str, paths: list[str], threads: int) -> None:
    """One process of a user's own loop: ask for members and tell their scores, no engine involved."""
    import torch

    import poptrain
    from poptrain.trainable import resolve_trainable

    torch.set_num_threads(threads)
    pop = poptrain.connect(url, name)
    cls = resolve_trainable(pop.spec.trainable, paths)
    while (member := pop.ask()) is not None:
        net = cls(dict(member.hparams), member.seed)
        if member.state is not None:
            net.load_state_dict(member.state)
            net.set_hparams(dict(member.hparams))

        def apply(decision: poptrain.Exploit, net=net) -> None:
            net.load_state_dict(decision.state)
            net.set_hparams(dict(decision.hparams))

        while member.running:
            net.set_hparams(dict(member.hparams))
            net.train()
            pop.tell(member, net.evaluate(), state=net.state_dict, apply=apply)
    pop.close()


def run_own_loops(spec: str, overrides: dict, workers: int, folder: str, tag: str) -> float:
    """The same experiment trained by `workers` processes running own ask/tell loops (forked, like the engine's)."""
    exp = load_spec(spec, storage=f"sqlite:///{folder}/{tag}.db", **overrides)
    threads = max(1, (os.cpu_count() or 1) // workers)
    start = time.perf_counter()
    exp.create()
    in_processes("fork", own_loop, [(exp.storage, exp.name, exp.paths, threads)] * workers)
    return time.perf_counter() - start


def asktell_run(workers: int, repeats: int, folder: str) -> None:
    """mlp_digits 8 x 60 through own ask/tell loops against the local engine, in alternation."""
    spec, overrides = os.path.join(EXAMPLES, "mlp_digits.toml"), {"steps": 60, "population": 8}
    exp = load_spec(spec, storage=f"sqlite:///{folder}/asktell-spec.db", **overrides)
    resolve_trainable(exp.trainable, exp.paths)  # imported before forking, on both sides
    engine, own = [], []
    for i in range(repeats):
        engine.append(run_pbt(spec, overrides, workers, folder, f"asktell-engine-{i}")[0])
        own.append(run_own_loops(spec, overrides, workers, folder, f"asktell-own-{i}"))
    e, o = statistics.median(engine), statistics.median(own)
    print(f"ask/tell: mlp_digits {exp.population} members x {exp.steps} epochs: local engine {e:.2f} s, "
          f"{workers} own ask/tell loops {o:.2f} s, ratio own loops/engine {o / e:.2f}x (target <= 1.1x)")


def short_run(workers: int, repeats: int, folder: str) -> None:
    """8 members x 30 epochs, start-up included, against a pool forked after torch was imported."""
    spec, overrides = os.path.join(EXAMPLES, "mlp_digits.toml"), {"steps": 30, "population": 8}
    exp = load_spec(spec, storage=f"sqlite:///{folder}/short-spec.db", **overrides)
    resolve_trainable(exp.trainable, exp.paths)  # torch and the model's module, imported before any timer
    import torch._dynamo  # noqa: F401 - what a first optimiser step imports: the forked pool inherits it too
    bare, pbt = [], []
    for i in range(repeats):
        bare.append(run_bare(exp, workers, method="fork"))
        pbt.append(run_pbt(spec, overrides, workers, folder, f"short-{i}")[0])
    b, p = statistics.median(bare), statistics.median(pbt)
    print(f"short run: mlp_digits {exp.population} members x {exp.steps} epochs, start-up included: bare forked "
          f"pool {b:.2f} s, PBT (local engine) {p:.2f} s, ratio PBT/bare {p / b:.2f}x (target <= 2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=sorted(WORKLOADS) + ["short", "asktell"])
    args = parser.parse_args()
    print(f"workers={args.workers} repeats={args.repeats} cpus={os.cpu_count()}")
    with tempfile.TemporaryDirectory() as folder:
        if args.only in (None, "short"):
            short_run(args.workers, args.repeats, folder)
        if args.only in (None, "asktell"):
            asktell_run(args.workers, args.repeats, folder)
        for name, (file, overrides) in WORKLOADS.items():
            if args.only and name != args.only:
                continue
            spec = os.path.join(EXAMPLES, file)
            exp = load_spec(spec, storage=f"sqlite:///{folder}/{name}-spec.db", **overrides)
            bare, pbt, exploits = [], [], 0
            # both sides fork from this process after the imports, as the local engine's workers do
            resolve_trainable(exp.trainable, exp.paths)
            if "torch" in sys.modules:
                import torch._dynamo  # noqa: F401 - what a first optimiser step imports
            for i in range(args.repeats):  # interleaved, so drift in machine load hits both sides
                bare.append(run_bare(exp, args.workers, method="fork"))
                seconds, exploits = run_pbt(spec, overrides, args.workers, folder, f"{name}-{i}")
                pbt.append(seconds)
            b, p = statistics.median(bare), statistics.median(pbt)
            intervals = exp.population * exp.steps
            print(f"{name}: {exp.population} members x {exp.steps} intervals, ready every "
                  f"{exp.ready.intervals}: bare {b:.2f} s, PBT {p:.2f} s ({exploits} exploits), "
                  f"ratio PBT/bare {p / b:.2f}x, overhead {(p - b) / intervals * 1000:.2f} ms per member-interval")


if __name__ == "__main__":
    main()
