"""PBT against random search at equal compute on the demo job (noisy_digits), over seeds 0..N-1.

Random search here is the same members with the same initial hyperparameters trained for the
same number of epochs without exploit, so both sides spend exactly the same member-intervals.
Runs on the spec's engine (the demo's: vectorized) with one torch thread, deterministic per
seed. The verdict: in how many seeds PBT's best member beats random search's, and in how many
the margin exceeds the spread (max - min) of random search's best over the seeds.

    python benchmarks/pbt_vs_random.py [--seeds 5] [--spec examples/noisy_digits.toml] [--engine NAME] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

import torch  # noqa: E402

from poptrain.experiment import load_spec  # noqa: E402
from poptrain.result import Result  # noqa: E402

DEMO = os.path.join(HERE, "..", "examples", "noisy_digits.toml")


def final_scores(result: Result) -> list[float]:
    """Every member's final score, best first."""
    return [m.last_score for m in result.best_members()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--spec", default=DEMO, help="the job (default: the demo's, examples/noisy_digits.toml)")
    parser.add_argument("--steps", type=int, help="intervals per member (default: the spec's)")
    parser.add_argument("--population", type=int, help="members (default: the spec's)")
    parser.add_argument("--engine", help="serial, vectorized or local (default: the spec's; the demo's is vectorized)")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 4 members, 4 steps: checks the script runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds, overrides = (1, {"population": 4, "steps": 4}) if args.smoke else (args.seeds, {"steps": args.steps, "population": args.population})
    margins, random_best, start = [], [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(seeds):
            exp = load_spec(args.spec, storage=f"sqlite:///{folder}/s{seed}.db", seed=seed, **overrides)
            sign = 1 if exp.mode == "max" else -1
            pbt = final_scores(exp.run(engine=args.engine))
            random = final_scores(exp.baseline().run(engine=args.engine))
            margins.append(sign * (pbt[0] - random[0]))
            random_best.append(random[0])
            print(f"seed {seed}: PBT best {pbt[0]:.4f} mean {sum(pbt) / len(pbt):.4f} worst {pbt[-1]:.4f} | "
                  f"random search best {random[0]:.4f} mean {sum(random) / len(random):.4f} worst {random[-1]:.4f} | "
                  f"margin {margins[-1]:+.4f}", flush=True)
    spread = max(random_best) - min(random_best)
    wins = sum(m > 0 for m in margins)
    beyond = sum(m > spread for m in margins)
    print(f"{exp.name}, {exp.population} members x {exp.steps} intervals, {seeds} seeds, "
          f"{time.perf_counter() - start:.0f} s")
    print(f"PBT's best beat random search's best in {wins} of {seeds} seeds; smallest margin {min(margins):.4f}, "
          f"random search's best spread (max - min over seeds) {spread:.4f}: margin beyond the spread in "
          f"{beyond} of {seeds} seeds")


if __name__ == "__main__":
    main()
