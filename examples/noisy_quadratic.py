"""The noisy quadratic model (Zhang et al. 2019): SGD on an ill-conditioned quadratic with gradient noise.

Loss L(θ) = ½ Σ hᵢ θᵢ² with curvatures hᵢ = 1/i (i = 1..DIMS); each SGD step sees the gradient plus
noise of variance NOISE²·hᵢ. It reproduces what learning rates do to real networks at no cost:
a large rate makes fast progress along the flat directions but sits at a high noise floor; lowering
it drops the loss at once (the floor falls) and then crawls. A greedy schedule therefore lowers the
rate too early (the short-horizon bias that FIRE PBT addresses), and the best fixed rate of a
run is far above the small ones a cautious search starts from (where PB2 helps).

Hyperparameters: `lr` (and, optionally, `width`: only the first `width` directions are trained,
the rest stay where they started, so a wider model reaches a lower loss: the trade-off of the
multi-objective example). Metrics: `loss`, and `width` (the model's size).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poptrain.records import Hparams
from poptrain.trainable import Trainable

DIMS = 100
STEPS_PER_INTERVAL = 10
NOISE = 1.0


class NoisyQuadratic(Trainable):
    """One member: θ in `dims` dimensions, trained by SGD with learning rate `lr` on its first `width` of them."""

    dims = DIMS  # a subclass may change the problem (benchmarks/variants.py uses 1,000 directions)
    noise = NOISE

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.curvature = 1.0 / np.arange(1, self.dims + 1)
        self.theta = np.ones(self.dims)
        self.rng = np.random.default_rng(seed)

    def train(self) -> None:
        """STEPS_PER_INTERVAL noisy gradient steps."""
        lr = float(self.hparams["lr"])
        width = int(self.hparams.get("width", self.dims))
        h = self.curvature[:width]
        for _ in range(STEPS_PER_INTERVAL):
            noise = self.rng.normal(0.0, self.noise, width) * np.sqrt(h)
            self.theta[:width] -= lr * (h * self.theta[:width] + noise)
        np.clip(self.theta, -1e6, 1e6, out=self.theta)  # a diverging rate ends in a huge loss, not overflow

    def evaluate(self) -> dict[str, float]:
        """The loss (and the model's width, the second objective of the multi-objective example)."""
        loss = float(0.5 * np.sum(self.curvature * self.theta**2))
        return {"loss": loss, "width": float(self.hparams.get("width", self.dims))}

    def state_dict(self) -> dict[str, Any]:
        """θ and the noise generator's state, so a copy continues the same stream."""
        return {"theta": self.theta.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """θ copied; the noise stream stays this member's own (its seed), so copies do not repeat each other."""
        self.theta = np.array(state["theta"], dtype=float)


class WideNoisyQuadratic(NoisyQuadratic):
    """The model with 1,000 directions: the flat ones need a high rate for long (benchmarks/variants.py, FIRE)."""

    dims = 1000
