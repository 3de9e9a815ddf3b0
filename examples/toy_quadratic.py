"""The toy of the PBT paper's Figure 2: two members that each see only half of the objective.

True objective Q(θ) = 1.2 − (θ0² + θ1²). A member does gradient ascent on the surrogate
Q̂(θ|h) = 1.2 − (h0·θ0² + h1·θ1²), so with h = (1, 0) or (0, 1) it optimises one coordinate
only and plateaus at Q = 1.2 − 0.81 = 0.39; exploit (copy θ and h) plus explore (noise on h)
lets the population reach the optimum 1.2. Run it with `poptrain run examples/toy_quadratic.toml`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poptrain.records import Hparams
from poptrain.trainable import Trainable

THETA0 = (0.9, 0.9)
LEARNING_RATE = 0.01


def true_q(theta: np.ndarray) -> float:
    """The objective the experiment scores: Q(θ) = 1.2 − |θ|²."""
    return float(1.2 - np.sum(theta**2))


class ToyQuadratic(Trainable):
    """One member of the toy: θ in the plane, hyperparameters h0 and h1 weigh the surrogate."""

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.theta = np.array(THETA0, dtype=float)

    def train(self) -> None:
        """One gradient-ascent step on the surrogate Q̂(θ|h)."""
        h = np.array([self.hparams["h0"], self.hparams["h1"]], dtype=float)
        self.theta = self.theta + LEARNING_RATE * (-2.0 * h * self.theta)

    def evaluate(self) -> dict[str, float]:
        """The true objective, which the surrogate's gradient never sees."""
        return {"q": true_q(self.theta)}

    def state_dict(self) -> dict[str, Any]:
        """θ as a copy, so the snapshot does not move with the member."""
        return {"theta": self.theta.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take a copy of the saved θ."""
        self.theta = np.array(state["theta"], dtype=float)
