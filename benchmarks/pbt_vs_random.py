"""PBT against random search at equal compute on mlp_digits, over several seeds.

Random search here is the same members with the same initial hyperparameters trained for the
same number of epochs without exploit, so both sides spend exactly the same member-intervals.
Runs on the serial engine (deterministic per seed).

    python benchmarks/pbt_vs_random.py [--seeds 3] [--steps 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

import torch  # noqa: E402

from poptrain.experiment import load_spec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    wins = 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            exp = load_spec(os.path.join(HERE, "..", "examples", "mlp_digits.toml"),
                            storage=f"sqlite:///{folder}/s{seed}.db", steps=args.steps, seed=seed)
            pbt = exp.run(engine="serial").members().score
            random = exp.baseline().run(engine="serial").members().score
            wins += pbt.mean() > random.mean()
            print(f"seed {seed}: PBT best {pbt.max():.4f} mean {pbt.mean():.4f} worst {pbt.min():.4f} | "
                  f"random search best {random.max():.4f} mean {random.mean():.4f} worst {random.min():.4f}")
    print(f"PBT's population mean beat random search's in {wins} of {args.seeds} seeds")


if __name__ == "__main__":
    main()
