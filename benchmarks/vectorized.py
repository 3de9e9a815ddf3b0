"""The vectorized engine against the local engine, and a population step against a single-model step.

1. mlp_digits with 32 members (same seeds, hyperparameters, intervals and policy) on the local
   engine with 2 workers, on the vectorized engine and on the vectorized engine in 2 shards (a
   process each), in this run, alternately: member-intervals per second of each (median of the
   repeats) and their ratios to the local engine. Each run includes starting up
   (worker processes, imports, reading the data) and every store write and checkpoint.
   On a CUDA GPU, also the vectorized engine there with 256 and 1024 members, against the local
   engine's rate (which its two workers bound, whatever the population).
2. The best accuracy PBT reaches on mlp_digits on both engines over 3 seeds (same compute).
3. The time of one vectorized population epoch over one single-model epoch, for 8, 32 and 128
   members on the CPU (and 256 and 1024 on a CUDA GPU when there is one): the "near
   single-model cost" claim.
4. torch.compile (the engine's `compile` flag): one population epoch compiled against eager, and
   how long compiling takes (with an empty inductor cache, as on a fresh machine).
5. The vectorized engine's `threads` option: the run of section 1 with one thread against one
   per core (the default), alternately.

    python benchmarks/vectorized.py [--members 32] [--steps 30] [--repeats 3] [--smoke]

`--smoke` runs every section at toy sizes, the GPU ones on the CPU: the test suite runs it so
that the script keeps working on machines CI does not have.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
sys.path.insert(0, EXAMPLES)

import torch  # noqa: E402

from mlp_digits import MLPDigits, MLPDigitsPopulation  # noqa: E402
from poptrain.experiment import load_spec  # noqa: E402
from poptrain.engines import Local, Vectorized  # noqa: E402


SHARDS = 2  # one shard per core of the 2-core machine
# the engines compared, with their options: the population in one process, and in SHARDS processes
ENGINES = {"local": Local(workers=2), "vectorized": Vectorized(), "sharded": Vectorized(shards=SHARDS)}


def engines(members: int, steps: int, repeats: int, folder: str) -> float:
    """Each engine in turn, `repeats` times; the median rate of each and its ratio to local (the machine is noisy)."""
    rates: dict[str, list[float]] = {engine: [] for engine in ENGINES}
    for repeat in range(repeats):
        for engine in rates:
            exp = load_spec(os.path.join(EXAMPLES, "mlp_digits.toml"), name=f"mlp_digits-{repeat}",
                            storage=f"sqlite:///{folder}/{engine}.db", population=members, steps=steps)
            start = time.perf_counter()
            exp.run(engine=ENGINES[engine])
            rates[engine].append(members * steps / (time.perf_counter() - start))
        print(f"  run {repeat + 1}: " + ", ".join(f"{e} {r[-1]:6.1f}" for e, r in rates.items())
              + " member-intervals/s = " + ", ".join(f"{e} {r[-1] / rates['local'][-1]:.1f}x"
                                                     for e, r in rates.items() if e != "local"))
    median = {engine: statistics.median(r) for engine, r in rates.items()}
    print("  median: " + ", ".join(f"{e} {r:.1f}" for e, r in median.items()) + " member-intervals/s; "
          f"vectorized / local: {median['vectorized'] / median['local']:.1f}x; vectorized in {SHARDS} shards / local: "
          f"{median['sharded'] / median['local']:.1f}x")
    return median["local"]


def threads(members: int, steps: int, repeats: int, folder: str) -> None:
    """The vectorized engine with one torch thread against one per core (its default), alternately."""
    every = os.cpu_count() or 1
    rates: dict[int, list[float]] = {1: [], every: []}
    for repeat in range(repeats):
        for count in rates:
            exp = load_spec(os.path.join(EXAMPLES, "mlp_digits.toml"), name=f"threads-{count}-{repeat}",
                            storage=f"sqlite:///{folder}/threads.db", population=members, steps=steps)
            start = time.perf_counter()
            exp.run(engine=Vectorized(threads=count))
            rates[count].append(members * steps / (time.perf_counter() - start))
    one, all_ = statistics.median(rates[1]), statistics.median(rates[every])
    print(f"  median: 1 thread {one:.1f}, {every} threads {all_:.1f} member-intervals/s; "
          f"{every} / 1: {all_ / one:.2f}x")


def large_populations(sizes: list[int], steps: int, device: str, local: float, folder: str) -> None:
    """The vectorized engine on `device` at each population size, against the local engine's rate."""
    for size in sizes:
        exp = load_spec(os.path.join(EXAMPLES, "mlp_digits.toml"), name=f"mlp_digits-{device}-{size}",
                        storage=f"sqlite:///{folder}/large.db", population=size, steps=steps)
        start = time.perf_counter()
        exp.run(engine="vectorized", device=device)
        rate = size * steps / (time.perf_counter() - start)
        print(f"  {size:5d} members on {device}: {rate:8.1f} member-intervals/s = {rate / local:.1f}x the local engine")


def accuracy(seeds: int, folder: str, **sizes: int) -> None:
    """The best accuracy PBT reaches on each engine with the same members, steps and policy."""
    best: dict[str, list[float]] = {"local": [], "vectorized": []}
    for seed in range(seeds):
        for engine in best:
            exp = load_spec(os.path.join(EXAMPLES, "mlp_digits.toml"), seed=seed,
                            storage=f"sqlite:///{folder}/acc-{engine}-{seed}.db", **sizes)
            best[engine].append(exp.run(engine=ENGINES[engine]).best().score)
        print(f"  seed {seed}: local {best['local'][-1]:.4f}  vectorized {best['vectorized'][-1]:.4f}")
    print(f"  mean best accuracy: local {statistics.mean(best['local']):.4f}, "
          f"vectorized {statistics.mean(best['vectorized']):.4f}")


def epoch_time(make, repeats: int = 3) -> float:
    trainable = make()
    trainable.train()  # warm up (allocations, kernels)
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainable.train()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_costs(sizes: list[int], device: str) -> None:
    hp = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
    if device == "cpu":
        single = epoch_time(lambda: MLPDigits(hp, 0))
    else:
        single = epoch_time(lambda: MLPDigitsPopulation([hp], [0], device=device))
    print(f"  one model, one epoch on {device}: {single * 1000:.1f} ms")
    for size in sizes:
        batched = epoch_time(lambda: MLPDigitsPopulation([hp] * size, list(range(size)), device=device))
        print(f"  {size:5d} members in one batched epoch: {batched * 1000:8.1f} ms = {batched / single:6.2f}x one "
              f"model ({size * single / batched:6.1f}x faster than {size} separate epochs)")


def compile_cost(size: int, device: str) -> None:
    """Steady-state epoch time compiled against eager, and the one-off compile time."""
    import torch._inductor.config

    hp = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
    eager = epoch_time(lambda: MLPDigitsPopulation([hp] * size, list(range(size)), device=device))
    population = MLPDigitsPopulation([hp] * size, list(range(size)), device=device)
    population.compile()
    torch._inductor.config.force_disable_caches = True  # time a cold compile, not a cache hit
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "dynamo_pgo force disabled": the point of this run
        population.train()  # compiles the step for both batch shapes (full and last)
        population.evaluate()  # and the forward pass
    compiling = time.perf_counter() - start - eager
    torch._inductor.config.force_disable_caches = False
    if population.compiler.failed:
        print("  torch.compile failed here (see the warning above): the flag trains eagerly")
        return
    compiled = epoch_time(lambda: population)
    print(f"  {size} members, one epoch on {device}: eager {eager * 1000:.1f} ms, compiled {compiled * 1000:.1f} ms "
          f"= {eager / compiled:.2f}x faster; compiling took {compiling:.0f} s, repaid after "
          f"{compiling / max(eager - compiled, 1e-9):.0f} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="every section at toy sizes, the GPU ones on the CPU")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    accelerator = "cuda" if torch.cuda.is_available() else "cpu" if args.smoke else None
    if args.smoke:
        args.members, args.steps, args.repeats = 4, 3, 1
    small, large = ([2, 4], [8]) if args.smoke else ([8, 32, 128], [256, 1024])
    print(f"cpus={os.cpu_count()} torch={torch.__version__} cuda={torch.cuda.is_available()}")
    print(f"1. mlp_digits, {args.members} members x {args.steps} epochs:")
    with tempfile.TemporaryDirectory() as folder:
        local = engines(args.members, args.steps, args.repeats, folder)
        if accelerator:
            large_populations(large, args.steps, accelerator, local, folder)
        print("2. best accuracy of mlp_digits, local vs vectorized engine (same members, epochs and policy):")
        if args.smoke:
            accuracy(1, folder, population=2, steps=3)
        else:
            accuracy(3, folder)
    print("3. one population epoch / one single-model epoch:")
    step_costs(small, "cpu")
    if accelerator:
        step_costs(large, accelerator)
    print("4. torch.compile of the batched step (--compile), compiled vs eager:")
    compile_cost(args.members, "cpu")
    if accelerator and accelerator != "cpu":
        compile_cost(large[-1], accelerator)
    print(f"5. the vectorized engine's threads, 1 against {os.cpu_count()} (its default):")
    with tempfile.TemporaryDirectory() as folder:
        threads(args.members, args.steps, args.repeats, folder)


if __name__ == "__main__":
    main()
