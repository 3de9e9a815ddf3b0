"""PBT from Python, top to bottom: the mlp_digits job through the API instead of a TOML file.

    .venv/bin/python examples/quickstart.py [--engine serial] [--steps 30]
"""

from __future__ import annotations

import argparse
import os

import poptrain
from mlp_digits import MLPDigits


def main(engine: str = "local", steps: int = 30, population: int = 8, storage: str = "sqlite:///runs/quickstart.db",
         workers: int | None = None) -> poptrain.Result:
    experiment = poptrain.Experiment(
        name="quickstart",
        trainable=MLPDigits,
        space={
            "lr": poptrain.LogUniform(1e-4, 0.5),
            "momentum": poptrain.Uniform(0.0, 0.99),
            "weight_decay": poptrain.LogUniform(1e-6, 1e-2),
        },
        metric="accuracy",
        mode="max",
        population=population,
        steps=steps,  # epochs: one train() call is one interval
        ready=poptrain.Every(3),
        exploit=poptrain.Truncation(fraction=0.25),
        explore=poptrain.Perturb(factors=(0.8, 1.2), resample_probability=0.25),
        storage=storage,
        seed=0,
        initial=[{"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}],  # a known-good member to start from
    )
    # an engine by name ("serial") or as an object holding its options
    result = experiment.run(engine=poptrain.engines.Local(workers=workers) if engine == "local" else engine,
                            progress=True)

    best = result.best()
    print(f"best member {best.id}: accuracy {best.score:.4f} at epoch {best.step}, {best.hparams}")
    print(f"its checkpoint: {best.checkpoint_url}")
    lineage = result.lineage(best.id)
    print("the exploits that made it:" if len(lineage) else "it never copied another member")
    if len(lineage):
        print(lineage[["member", "step", "source", "source_step"]].to_string(index=False))
    print("its learning rate over training:")
    print(result.schedule(best.id)[["step", "lr"]].drop_duplicates("lr").to_string(index=False))
    state = best.load_state()  # {"model": ..., "optimizer": ..., ...}: load it into a fresh MLPDigits
    print(f"its saved state holds: {sorted(state)}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="local", choices=["local", "serial"])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    os.makedirs("runs", exist_ok=True)
    main(engine=args.engine, steps=args.steps)
