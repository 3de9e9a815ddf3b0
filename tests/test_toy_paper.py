"""The paper's Figure 2 toy, reproduced through the real engine and store (acceptance 2)."""

from __future__ import annotations

import uuid

import numpy as np

from poptrain.experiment import load_spec
from conftest import EXAMPLES


def run_toy(seed: int, steps: int, exploit: bool = True):
    exp = load_spec(f"{EXAMPLES}/toy_quadratic.toml", seed=seed, steps=steps,
                    storage=f"memory://{uuid.uuid4().hex}")
    if not exploit:
        exp = exp.baseline()
    frame = exp.run(engine="serial").frame()
    return frame.groupby("step").score.max()  # best member's Q after each step


def test_pbt_reaches_the_optimum_and_no_exploit_plateaus():
    curves = [run_toy(seed, 400) for seed in range(10)]
    at_200 = [c.loc[200] for c in curves]
    assert np.median(at_200) > 1.19, at_200
    assert all(c.max() > 1.19 for c in curves), [c.max() for c in curves]
    baseline = run_toy(0, 200, exploit=False)
    assert abs(baseline.loc[200] - 0.3897) < 1e-4
    assert baseline.max() < 0.39
