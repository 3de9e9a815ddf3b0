"""The population benchmarks/scale.py trains: a fast numpy stand-in for a batched model (and the tests' long runs)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class DriftPopulation:
    """Every member as one numpy array: its score drifts towards its `target` hyperparameter, with noise."""

    hparams = ("target",)

    def __init__(self, hparams: Sequence[dict[str, Any]], seeds: Sequence[int], device: str = "cpu") -> None:
        self.target = np.array([h["target"] for h in hparams], dtype=float)
        self.x = np.zeros(len(seeds))
        self.rng = np.random.default_rng(int(seeds[0]) if len(seeds) else 0)

    def train(self) -> None:
        self.x += 0.05 * (self.target - self.x) + self.rng.normal(0.0, 0.01, self.x.shape)

    def evaluate(self) -> list[float]:
        return (-(self.x - 1.0) ** 2).tolist()

    def set_hparams(self, member: int, hparams: dict[str, Any]) -> None:
        self.target[member] = hparams["target"]

    def copy_members(self, dsts: Sequence[int], srcs: Sequence[int]) -> None:
        self.x[list(dsts)] = self.x[list(srcs)]

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.tolist(), "target": self.target.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.target = np.array(state["x"]), np.array(state["target"])
