"""The paper's GAN and translation domains in miniature: PBT against random search at equal compute.

For each domain and seed, the example's population is trained twice: with PBT, and as random
search (`Experiment.baseline()`: the same members, seeds and initial hyperparameters, the same
number of intervals, no exploit), so both sides spend exactly the same member-intervals. It
prints each side's best and mean final score per seed, then writes the HTML report of seed 0's
PBT run of each domain (scores, lineage, the schedules found) and prints the best member's
schedule. The GAN runs on the vectorized engine, the translation on the serial engine (both are
deterministic per seed); one thread, as the engines' workers use.

    python benchmarks/paper_domains.py [--seeds 3] [--out runs/paper_domains] [--smoke]

10 to 20 minutes on a busy 2-core machine (translation takes most of it); `--smoke` runs every section at toy size in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
sys.path.insert(0, EXAMPLES)

import torch  # noqa: E402

from poptrain import Every  # noqa: E402
from poptrain.engines import Vectorized  # noqa: E402
from poptrain.experiment import load_spec  # noqa: E402

# domain: (example, engine, toy overrides)
DOMAINS = {"gan_digits": ("vectorized", {"population": 3, "steps": 2}),
           "translation": ("serial", {"population": 2, "steps": 2})}


def experiment(domain: str, seed: int, folder: str, smoke: bool) -> Any:
    """The domain's example spec for one seed, stored in its own database under `folder`."""
    overrides = DOMAINS[domain][1] if smoke else {}
    exp = load_spec(os.path.join(EXAMPLES, f"{domain}.toml"), storage=f"sqlite:///{folder}/{domain}-{seed}.db",
                    seed=seed, **overrides)
    if smoke:
        exp.ready = Every(1)  # a decision after every interval, so the toy run exploits too
    return exp


def schedule_lines(result: Any) -> list[str]:
    """The best member's stitched lineage: its hyperparameters at each step where they changed."""
    lineage = result.winning_lineage()
    names = list(result.spec["space"])
    lines, last = [], None
    for _, row in lineage.iterrows():
        values = tuple(float(row[n]) for n in names)
        if values != last:
            shown = ", ".join(f"{n}={v:.3g}" for n, v in zip(names, values))
            lines.append(f"    from step {int(row['step'])}: {shown}")
            last = values
    return lines


def compare(domain: str, seeds: int, folder: str, out: str, smoke: bool) -> None:
    """PBT against random search for one domain over `seeds` seeds; seed 0's PBT run reported."""
    name = DOMAINS[domain][0]
    # one torch thread, as set in main() (the vectorized engine's default is one per core)
    engine = Vectorized(threads=1) if name == "vectorized" else name
    wins, pbt_best, random_best = 0, [], []
    started = time.perf_counter()
    for seed in range(seeds):
        exp = experiment(domain, seed, folder, smoke)
        pbt_result = exp.run(engine=engine)
        pbt = pbt_result.members().score
        random = exp.baseline().run(engine=engine).members().score
        wins += pbt.max() > random.max()
        pbt_best.append(pbt.max())
        random_best.append(random.max())
        print(f"{domain} seed {seed}: PBT best {pbt.max():.2f} mean {pbt.mean():.2f} | "
              f"random search best {random.max():.2f} mean {random.mean():.2f}", flush=True)
        if seed == 0:
            path = pbt_result.report(os.path.join(out, f"{domain}.html"))
            best = pbt_result.best()
            print(f"{domain}: report of seed 0's PBT run: {path}; best member {best.id} "
                  f"({exp.metric} {best.score:.2f}), its schedule (stitched lineage):")
            print("\n".join(schedule_lines(pbt_result)), flush=True)
    print(f"{domain}: PBT's best beat random search's best in {wins} of {seeds} seeds; mean of the bests "
          f"PBT {sum(pbt_best) / seeds:.2f}, random search {sum(random_best) / seeds:.2f} "
          f"({time.perf_counter() - started:.0f} s, {name} engine)", flush=True)


def ceilings() -> None:
    """The GAN score's yardsticks: the classifier's own accuracy and the score of real digits."""
    import digits_inception

    print(f"inception classifier: accuracy {digits_inception.classifier_accuracy():.3f} on held-out digits; "
          f"real held-out digits score {digits_inception.real_data_score():.2f} (the ceiling), "
          f"one digit repeated scores 1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join("runs", "paper_domains"), help="folder for the HTML reports")
    parser.add_argument("--smoke", action="store_true", help="every section at toy size (a test runs this)")
    args = parser.parse_args()
    seeds = 1 if args.smoke else args.seeds
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    ceilings()
    with tempfile.TemporaryDirectory() as folder:
        for domain in DOMAINS:
            compare(domain, seeds, folder, args.out, args.smoke)


if __name__ == "__main__":
    main()
