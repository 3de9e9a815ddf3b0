"""The variants beyond the paper's PBT against PBT (or random search), over 3 seeds, in one run.

1. PB2 vs PBT, 4 members at equal compute, on the noisy quadratic model (examples/noisy_quadratic.py)
   whose members start at learning rates 1e-4..8e-4, far below the best fixed rate (about 0.1);
2. FIRE PBT vs PBT on the noisy quadratic model with 1,000 directions, where PBT's greed shows:
   its learning rate falls within the first fifth of the run and it ends worse than one fixed rate;
3. multi-objective PBT vs random search (the same members without exploit): the hypervolume of the
   final (loss, width) fronts;
4. neuroevolution vs gradient PBT on the digits (vectorized engine): best accuracy, seconds, and
   accuracy per million sample-forward passes;
and the time of one PB2 decision at 64 members and 1,024 recorded intervals.

    python benchmarks/variants.py [--smoke] [--seeds 3]

Every run is synchronous on the serial engine (the vectorized one for section 4) with an in-memory
store, so a seed's numbers do not depend on scheduling. `--smoke` runs every section at toy size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import poptrain  # noqa: E402
from noisy_quadratic import NoisyQuadratic, WideNoisyQuadratic as WideQuadratic  # noqa: E402
from poptrain.analysis import hypervolume  # noqa: E402

RUNS = iter(range(10**9))


def run(trainable: Any, space: dict[str, Any], steps: int, population: int, exploit: Any, explore: Any, seed: int,
        metric: str = "loss", mode: str = "min", initial: list[dict[str, Any]] | None = None, engine: str = "serial",
        ready: int = 4, folder: str = "") -> poptrain.Result:
    """One synchronous run on an in-memory store."""
    exp = poptrain.Experiment(name=f"run{next(RUNS)}", trainable=trainable, space=space, metric=metric, mode=mode,
                              population=population, steps=steps, ready=poptrain.Every(ready), exploit=exploit,
                              explore=explore, seed=seed, initial=initial, synchronous=True,
                              storage=f"memory://variants{next(RUNS)}", checkpoints=folder or None)
    # one torch thread, as set in main() (the vectorized engine's default is one per core)
    return exp.run(engine=engine, **({"threads": 1} if engine == "vectorized" else {}))


def best_loss(result: poptrain.Result) -> float:
    return float(result.members().score.min())


def lineage_lr(result: poptrain.Result, at: list[float]) -> list[float]:
    """The learning rate of the best member's lineage at fractions `at` of the run."""
    m = result.members()
    curve = result.winning_lineage(int(m.loc[m.score.idxmin(), "member"]))
    return [float(curve.lr.iloc[min(len(curve) - 1, int(f * (len(curve) - 1)))]) for f in at]


def fixed_rate(trainable: type, lr: float, steps: int, seed: int) -> float:
    """The loss of one member trained at one fixed learning rate (no PBT)."""
    member = trainable({"lr": lr}, seed)
    for _ in range(steps):
        member.train()
    return float(member.evaluate()["loss"])


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n{title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")


def pb2_vs_pbt(seeds: int, smoke: bool) -> None:
    steps = 8 if smoke else 60
    space = {"lr": poptrain.LogUniform(1e-4, 1.5)}
    initial = [{"lr": v} for v in (1e-4, 2e-4, 4e-4, 8e-4)]
    rows, wins = [], 0
    for seed in range(seeds):
        pbt = run(NoisyQuadratic, space, steps, 4, poptrain.Truncation(), poptrain.Perturb(), seed, initial=initial)
        pb2 = run(NoisyQuadratic, space, steps, 4, poptrain.Truncation(), poptrain.PB2(), seed, initial=initial)
        a, b = best_loss(pbt), best_loss(pb2)
        wins += b < a
        rows.append([seed, a, b, lineage_lr(pbt, [1.0])[0], lineage_lr(pb2, [1.0])[0], "PB2" if b < a else "PBT"])
    best_fixed = min((np.mean([fixed_rate(NoisyQuadratic, lr, steps, s) for s in range(seeds)]), lr)
                     for lr in (0.03, 0.1, 0.3))
    table(f"PB2 vs PBT: 4 members x {steps} intervals, noisy quadratic, initial lr 1e-4..8e-4 (final best loss, lower wins)",
          ["seed", "PBT loss", "PB2 loss", "PBT final lr", "PB2 final lr", "winner"], rows)
    print(f"best fixed lr of 0.03/0.1/0.3 alone: lr {best_fixed[1]} loss {best_fixed[0]:.4g}")
    print(f"PB2 beat PBT in {wins} of {seeds} seeds")


def fire_vs_pbt(seeds: int, smoke: bool) -> None:
    steps, population = (8, 8) if smoke else (100, 16)
    space = {"lr": poptrain.LogUniform(1e-3, 1.5)}
    rows, wins, greedy = [], 0, 0
    fixed = {lr: np.mean([fixed_rate(WideQuadratic, lr, steps, s) for s in range(seeds)]) for lr in (0.1, 0.3, 0.6)}
    lr_fixed, loss_fixed = min(fixed.items(), key=lambda kv: kv[1])
    for seed in range(seeds):
        pbt = run(WideQuadratic, space, steps, population, poptrain.Truncation(), poptrain.Perturb(), seed)
        fire = run(WideQuadratic, space, steps, population, poptrain.Fire(subpopulations=2, evaluators=2),
                   poptrain.Perturb(), seed)
        a, b = best_loss(pbt), best_loss(fire)
        wins += b <= a
        pbt_lr, fire_lr = lineage_lr(pbt, [0.25, 0.5, 1.0]), lineage_lr(fire, [0.25, 0.5, 1.0])
        greedy += pbt_lr[0] < lr_fixed and a > loss_fixed
        rows.append([seed, a, b, *pbt_lr, *fire_lr, "FIRE" if b <= a else "PBT"])
    table(f"FIRE vs PBT: {population} members x {steps} intervals, noisy quadratic with 1,000 directions "
          f"(final best loss, lower wins; lr of the best member's lineage at 25/50/100%)",
          ["seed", "PBT loss", "FIRE loss", "PBT lr 25%", "PBT lr 50%", "PBT lr end", "FIRE lr 25%", "FIRE lr 50%",
           "FIRE lr end", "winner"], rows)
    print(f"one fixed lr alone: " + ", ".join(f"lr {lr}: loss {v:.4g}" for lr, v in fixed.items()))
    print(f"PBT was greedy (lr below the best fixed {lr_fixed} by 25% of the run, and a final loss above "
          f"its {loss_fixed:.4g}) in {greedy} of {seeds} seeds")
    print(f"FIRE's final loss was at most PBT's in {wins} of {seeds} seeds")


def pareto_vs_random(seeds: int, smoke: bool) -> None:
    steps, population = (6, 8) if smoke else (40, 16)
    space = {"lr": poptrain.LogUniform(1e-3, 1.5), "width": poptrain.IntUniform(1, 100, log=True)}
    objectives = {"loss": "min", "width": "min"}
    rows, wins = [], 0

    def volume(result: poptrain.Result) -> tuple[float, int]:
        front = result.pareto_front(objectives)
        points = np.column_stack([-front.loss.to_numpy(float), -front.width.to_numpy(float) / 100])
        return hypervolume(points, (-3.0, -1.01)), len(front)

    for seed in range(seeds):
        mo = run(NoisyQuadratic, space, steps, population, poptrain.Pareto(objectives), poptrain.Perturb(), seed)
        rs = run(NoisyQuadratic, space, steps, population, None, poptrain.Perturb(), seed)
        (a, na), (b, nb) = volume(mo), volume(rs)
        wins += a > b
        rows.append([seed, a, na, b, nb, "multi-objective" if a > b else "random search"])
    table(f"Multi-objective PBT vs random search: {population} members x {steps} intervals, objectives loss (min) "
          f"and width/100 (min); hypervolume above (loss 3, width 1.01), higher wins",
          ["seed", "MO-PBT hypervolume", "MO-PBT front size", "random hypervolume", "random front size", "winner"], rows)
    print(f"multi-objective PBT's hypervolume beat random search's in {wins} of {seeds} seeds")


def neuroevolution_vs_gradient(seeds: int, smoke: bool) -> None:
    import torch

    from mlp_digits import MLPDigits
    from neuroevolution_digits import NeuroDigits

    torch.set_num_threads(1)
    population = 8 if smoke else 16
    epochs = [1, 2] if smoke else [1, 3, 15, 50]
    train_n, val_n = 1347, 450  # the digits split
    # Compute in sample-forward passes per member-interval: a generation of neuroevolution is one
    # evaluation (a pass over the validation set; a mutation costs next to nothing); an epoch of SGD
    # is a forward and a backward (about two forwards) per training sample, and the evaluation.
    ne_cost, sgd_cost = val_n, 3 * train_n + val_n
    generations = [round(e * sgd_cost / ne_cost) for e in epochs]
    rows = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            ne = run(NeuroDigits, {"sigma": poptrain.LogUniform(1e-3, 0.3)}, generations[-1], population,
                     poptrain.Truncation(), poptrain.Perturb(), seed, metric="accuracy", mode="max",
                     engine="vectorized", ready=1, folder=folder)
            ne_s = time.perf_counter() - start
            start = time.perf_counter()
            gd = run(MLPDigits, {"lr": poptrain.LogUniform(1e-3, 1.0), "momentum": poptrain.Uniform(0.0, 0.99),
                                 "weight_decay": poptrain.LogUniform(1e-6, 1e-2)}, epochs[-1], population,
                     poptrain.Truncation(), poptrain.Perturb(), seed, metric="accuracy", mode="max",
                     engine="vectorized", ready=1, folder=folder)
            gd_s = time.perf_counter() - start
        ne_best, gd_best = ne.frame().groupby("step").score.max(), gd.frame().groupby("step").score.max()
        for e, g in zip(epochs, generations):
            rows.append([seed, f"{population * e * sgd_cost / 1e6:.2f} M", g, float(ne_best.loc[g]), e,
                         float(gd_best.loc[e]), "neuroevolution" if ne_best.loc[g] > gd_best.loc[e] else "SGD"])
        rows.append([seed, "whole run (s)", generations[-1], f"{ne_s:.1f} s", epochs[-1], f"{gd_s:.1f} s", ""])
    table(f"Neuroevolution vs gradient PBT at equal compute: digits, {population} members each, vectorized engine "
          f"on the CPU (best validation accuracy; neuroevolution: 64-32-10 MLP, mutation only; SGD: mlp_digits' "
          f"64-128-10 MLP)",
          ["seed", "sample-passes", "NE generations", "NE best acc", "SGD epochs", "SGD best acc", "winner"], rows)


def pb2_decision_time(smoke: bool) -> None:
    from test_pb2 import SPACE, history_standings

    standings = history_standings(n=64, steps=16)
    source = {"lr": 0.01, "momentum": 0.5, "layers": 3, "act": "relu"}
    pb2 = poptrain.PB2()
    pb2.explore_batch([(0, source)], SPACE, [np.random.default_rng(0)], standings)  # imports scikit-learn
    times = []
    for i in range(2 if smoke else 7):
        start = time.perf_counter()
        pb2.explore_batch([(0, source)], SPACE, [np.random.default_rng(i)], standings)
        times.append(time.perf_counter() - start)
    print(f"\nPB2 decision at 64 members and 1,024 recorded intervals: {1000 * float(np.median(times)):.0f} ms "
          f"(median of {len(times)}; target 100 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="every section at toy size")
    args = parser.parse_args()
    seeds = 1 if args.smoke else args.seeds
    started = time.perf_counter()
    pb2_decision_time(args.smoke)
    pb2_vs_pbt(seeds, args.smoke)
    fire_vs_pbt(seeds, args.smoke)
    pareto_vs_random(seeds, args.smoke)
    neuroevolution_vs_gradient(seeds, args.smoke)
    print(f"\ntotal: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
