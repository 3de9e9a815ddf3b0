"""The batched CartPole, Acrobot, Pendulum and MountainCarContinuous in torch follow gymnasium's own environments step by step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from poptrain.torch.envs import (BatchedAcrobot, BatchedCartPole, BatchedEnv, BatchedMountainCarContinuous,
                                 BatchedPendulum)


def follow(env_id: str, batched_cls: type[BatchedEnv], seed: int, policy, steps: int = 1200) -> tuple[int, int]:
    """Step gymnasium's env and the batched one (n=3, the middle one compared) from the same start; count episode ends."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    batched = batched_cls(3)
    uniforms = torch.rand(3, batched.state_size, generator=torch.Generator().manual_seed(seed))
    batched.reset(torch.ones(3, dtype=torch.bool), uniforms)
    batched.state[1] = torch.as_tensor(np.asarray(env.unwrapped.state, dtype=np.float64))
    rng = np.random.default_rng(seed)
    terminations = truncations = 0
    for t in range(steps):
        assert np.allclose(batched.observe()[1].numpy(), obs, atol=1e-6, rtol=0), f"step {t}"
        assert np.array_equal(batched.observe()[1].numpy(), obs) or env_id == "Acrobot-v1", f"step {t}"
        action = policy(rng, obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        if isinstance(action, np.ndarray):  # a continuous action [action_size]; the other two stand still
            actions = torch.zeros(3, len(action), dtype=torch.float32)
            actions[1] = torch.as_tensor(action)
        else:
            actions = torch.tensor([0, action, 0])
        r, term, trunc = batched.step(actions)
        # numpy squares Pendulum's float32 torque with powf, 1 float32 ulp off x*x about once in 2,000 steps
        assert abs(r[1].item() - reward) <= (1e-9 if env_id == "Pendulum-v1" else 0), f"step {t}"
        assert bool(term[1]) == terminated and bool(trunc[1]) == truncated, f"step {t}"
        assert np.allclose(batched.state[1].numpy(), np.asarray(env.unwrapped.state, dtype=np.float64), atol=1e-9)
        if terminated or truncated:
            terminations += terminated
            truncations += truncated and not terminated
            obs, _ = env.reset()
            mask = torch.tensor([False, True, False])
            batched.reset(mask, torch.rand(3, batched.state_size))
            batched.state[1] = torch.as_tensor(np.asarray(env.unwrapped.state, dtype=np.float64))
            assert batched.elapsed[1].item() == 0
    return terminations, truncations


def balance(rng, obs) -> int:
    """A simple controller that keeps CartPole up for 500 steps (so truncation is reached)."""
    return int(obs[2] + 0.5 * obs[3] > 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_cartpole_matches_gymnasium_with_random_actions(seed: int) -> None:
    terminations, truncations = follow("CartPole-v1", BatchedCartPole, seed, lambda rng, obs: int(rng.integers(2)))
    assert terminations > 20 and truncations == 0


def test_cartpole_truncates_at_500_steps_like_gymnasium() -> None:
    terminations, truncations = follow("CartPole-v1", BatchedCartPole, 3, balance)
    assert truncations == 2


def test_acrobot_matches_gymnasium() -> None:
    """Random actions rarely swing up: episodes end at the 500-step limit; a pumping policy terminates them."""
    terminations, truncations = follow("Acrobot-v1", BatchedAcrobot, 0, lambda rng, obs: int(rng.integers(3)))
    assert truncations >= 1
    pump = lambda rng, obs: 2 if obs[5] > 0 else 0  # torque along the second link's velocity  # noqa: E731
    terminations, _ = follow("Acrobot-v1", BatchedAcrobot, 1, pump)
    assert terminations >= 2


def test_reset_draws_the_initial_state_from_the_given_uniforms() -> None:
    env = BatchedCartPole(2)
    env.reset(torch.tensor([True, False]), torch.tensor([[0.0, 0.5, 1.0, 0.25], [0.9, 0.9, 0.9, 0.9]]))
    assert torch.allclose(env.state[0], torch.tensor([-0.05, 0.0, 0.05, -0.025], dtype=torch.float64))
    assert torch.equal(env.state[1], torch.zeros(4, dtype=torch.float64))


def torque(rng, obs) -> np.ndarray:
    """Random float32 actions, a fifth of them beyond the bounds (gymnasium clips them; so must the batched env)."""
    return rng.uniform(-2.5, 2.5, size=1).astype(np.float32)


def test_pendulum_matches_gymnasium_and_truncates_at_200_steps() -> None:
    terminations, truncations = follow("Pendulum-v1", BatchedPendulum, 0, torque)
    assert terminations == 0 and truncations == 6


def test_mountain_car_continuous_matches_gymnasium() -> None:
    """Random pushes (some beyond [-1, 1]) reach the 999-step limit; pushing along the velocity reaches the flag."""
    push = lambda rng, obs: np.array([1.2 * rng.uniform(-1, 1)], dtype=np.float32)  # noqa: E731
    terminations, truncations = follow("MountainCarContinuous-v0", BatchedMountainCarContinuous, 0, push, steps=1100)
    assert truncations == 1
    along = lambda rng, obs: np.array([1.5 if obs[1] >= 0 else -0.7], dtype=np.float32)  # noqa: E731
    terminations, truncations = follow("MountainCarContinuous-v0", BatchedMountainCarContinuous, 1, along, steps=800)
    assert terminations >= 3 and truncations == 0


def test_continuous_reset_draws_each_variable_within_its_own_bounds() -> None:
    env = BatchedPendulum(2)
    env.reset(torch.tensor([True, True]), torch.tensor([[0.0, 1.0], [0.75, 0.5]]))
    assert torch.allclose(env.state, torch.tensor([[-np.pi, 1.0], [np.pi / 2, 0.0]], dtype=torch.float64))
    car = BatchedMountainCarContinuous(1)
    car.reset(torch.tensor([True]), torch.tensor([[0.5, 0.9]]))
    assert torch.allclose(car.state, torch.tensor([[-0.5, 0.0]], dtype=torch.float64))
