"""The batched Pendulum in torch follows gymnasium's Pendulum-v1 step by step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from poptrain.torch.pendulum import BatchedPendulum


def test_pendulum_matches_gymnasium_step_by_step() -> None:
    """Random torques (some beyond the bounds, clipped), across episodes cut at 200 steps; the middle env is compared."""
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    batched = BatchedPendulum(3)
    batched.reset(torch.ones(3, dtype=torch.bool), torch.rand(3, 2, generator=torch.Generator().manual_seed(0)))
    batched.state[1] = torch.as_tensor(np.asarray(env.unwrapped.state, dtype=np.float64))
    rng = np.random.default_rng(0)
    truncations = 0
    for t in range(450):
        # float64 sines may differ in the last bit from numpy's, so the state drifts by ~1e-12 over an episode
        assert np.allclose(batched.observe()[1].numpy(), obs, atol=1e-6, rtol=0), f"step {t}"
        action = rng.uniform(-2.5, 2.5, size=1).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        r, term, trunc = batched.step(torch.tensor([[0.0], [float(action[0])], [2.0]]))
        assert abs(r[1].item() - reward) <= 1e-9 * abs(reward) and not term[1] and bool(trunc[1]) == truncated, f"step {t}"
        assert np.allclose(batched.state[1].numpy(), np.asarray(env.unwrapped.state, dtype=np.float64), atol=1e-9)
        if truncated:
            truncations += 1
            obs, _ = env.reset()
            batched.reset(torch.tensor([False, True, False]), torch.rand(3, 2))
            batched.state[1] = torch.as_tensor(np.asarray(env.unwrapped.state, dtype=np.float64))
    assert truncations == 2 and batched.elapsed[0].item() == 450  # the others ran on, never terminating


def test_reset_draws_theta_and_its_velocity_within_gymnasiums_bounds() -> None:
    env = BatchedPendulum(2)
    env.reset(torch.tensor([True, False]), torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
    assert torch.allclose(env.state[0], torch.tensor([-np.pi, 1.0], dtype=torch.float64))
    assert torch.equal(env.state[1], torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(env.observe()[0], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-6)
