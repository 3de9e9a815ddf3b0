"""gymnasium's Pendulum-v1 written in torch tensors (continuous actions), so that a population's steps run as one batch.

Written for the off-policy agent (`poptrain.torch.offpolicy`); a shared module of batched continuous
environments may replace it, keeping this interface: `BatchedEnv`'s (`reset(mask, uniforms)`,
`step(actions)`, `observe()`), with actions [n, action_size] in [-max_action, max_action].
tests/test_rl_pendulum.py checks it against gymnasium step by step.
"""

from __future__ import annotations

import math

import torch

from .envs import BatchedEnv

Tensor = torch.Tensor


class BatchedPendulum(BatchedEnv):
    """gymnasium's Pendulum-v1: swing up and hold a pendulum with a torque in [-2, 2]; 200 steps, reward in [-16.3, 0]."""

    observation_size, state_size, action_size, max_steps = 3, 2, 1, 200
    max_action = 2.0
    reset_low, reset_high = -1.0, 1.0  # times (pi, 1) for (theta, theta_dot): gymnasium's reset bounds
    g, m, l, dt, max_speed = 10.0, 1.0, 1.0, 0.05, 8.0

    def initial(self, state: Tensor) -> Tensor:
        return state * torch.tensor([math.pi, 1.0], dtype=state.dtype, device=state.device)

    def dynamics(self, state: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One Euler step; the torque is float32 as gymnasium gets it, the state float64; never terminates."""
        th, thdot = state.unbind(1)
        u = actions.reshape(-1).to(torch.float32).clamp(-self.max_action, self.max_action)
        # gymnasium computes the torque's terms in float32 (a float32 action times a Python float), the rest in float64
        normalized = torch.remainder(th + math.pi, 2 * math.pi) - math.pi
        costs = normalized.square() + 0.1 * thdot.square() + (0.001 * u.square()).to(torch.float64)
        torque = (3.0 / (self.m * self.l**2) * u).to(torch.float64)
        newthdot = (thdot + (3 * self.g / (2 * self.l) * torch.sin(th) + torque) * self.dt).clamp(-self.max_speed,
                                                                                                  self.max_speed)
        newth = th + newthdot * self.dt
        return torch.stack((newth, newthdot), 1), -costs, torch.zeros_like(th, dtype=torch.bool)

    def observe(self) -> Tensor:
        th, thdot = self.state.unbind(1)
        return torch.stack((torch.cos(th), torch.sin(th), thdot), 1).to(torch.float32)
