"""Saving and loading one member's checkpoint: the data-only format against pickle, in this run.

The state is an mlp_digits member's (a 64-128-10 MLP, SGD with momentum buffers, the member's
RNG state), taken after one epoch, as a worker checkpoints it. Both sides write through the
same CheckpointStore (temporary name, rename, SHA-256) to a temporary folder and read the file
back verified; only the payload differs. The ratio is data-only time / pickle time; 1.0 is free.

    python benchmarks/checkpoints.py [--repeats 500] [--population]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

from mlp_digits import MLPDigits, MLPDigitsPopulation  # noqa: E402
from poptrain.store import CheckpointStore  # noqa: E402
from poptrain.store.checkpoints import PICKLE_MAGIC  # noqa: E402

HPARAMS = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}


class PickleCheckpoints(CheckpointStore):
    """The format poptrain wrote before: the whole state pickled (loaded here with the opt-in)."""

    def encode(self, state: Any) -> tuple[bytes, bytes]:
        return PICKLE_MAGIC, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def save_and_load(store: CheckpointStore, state: Any, repeats: int) -> list[float]:
    """Seconds per save + verified load, once per repeat (each under a fresh key, then deleted)."""
    times = []
    for i in range(repeats):
        began = time.perf_counter()
        key = store.key_for("bench", 0, i)
        store.load(key, store.save(key, state))
        times.append(time.perf_counter() - began)
        store.delete(key)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--population", action="store_true", help="a batched population of 8 members instead")
    args = parser.parse_args()
    if args.population:
        member: Any = MLPDigitsPopulation([HPARAMS] * 8, list(range(8)))
    else:
        member = MLPDigits(HPARAMS, 0)
    member.train()
    state = member.state_dict()
    with tempfile.TemporaryDirectory() as folder:
        stores = {"data-only": CheckpointStore(folder), "pickle": PickleCheckpoints(folder, allow_pickle=True)}
        results: dict[str, list[float]] = {name: [] for name in stores}
        for _ in range(3):  # alternate, so that a noisy moment hurts both sides
            for name, store in stores.items():
                results[name] += save_and_load(store, state, args.repeats)
        size = {name: len(store.encode(state)[1]) for name, store in stores.items()}
    medians = {name: statistics.median(times) * 1e3 for name, times in results.items()}
    what = "mlp_digits population of 8" if args.population else "mlp_digits member"
    for name, ms in medians.items():
        print(f"{name:>9}: {ms:.3f} ms per save + load of a {what} ({size[name]:,} bytes)")
    print(f"ratio data-only / pickle: {medians['data-only'] / medians['pickle']:.2f}")


if __name__ == "__main__":
    main()
