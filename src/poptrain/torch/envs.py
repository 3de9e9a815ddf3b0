"""Classic-control environments written in torch tensors, so that thousands step as one batch.

`BatchedCartPole` and `BatchedAcrobot` follow gymnasium's CartPole-v1 and Acrobot-v1 step by step
(the same states, rewards, terminations and the same 500-step time limit), and the continuous
`BatchedPendulum` and `BatchedMountainCarContinuous` its Pendulum-v1 and MountainCarContinuous-v0
(200 and 999 steps); tests/test_rl_envs.py checks them against gymnasium. Unlike gymnasium they take their randomness as arguments: `reset`
turns uniforms in [0, 1) into initial states, so the caller decides which generator each
environment draws from (a population draws each member's from that member's own generator).

The physical state is kept in float64, as gymnasium keeps it; observations are float32.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


class BatchedEnv:
    """`n` copies of one environment as tensors: `reset(mask, uniforms)`, `step(actions)`, `observe()`."""

    observation_size: int
    actions: int
    state_size: int
    max_steps: int
    reset_low: float | tuple[float, ...]  # a bound for every state variable, or one per variable
    reset_high: float | tuple[float, ...]

    def __init__(self, n: int, device: str | torch.device = "cpu") -> None:
        self.n, self.device = n, torch.device(device)
        self.state = torch.zeros(n, self.state_size, dtype=torch.float64, device=self.device)
        self.elapsed = torch.zeros(n, dtype=torch.long, device=self.device)  # steps since the episode began

    def reset(self, mask: Tensor, uniforms: Tensor) -> None:
        """Start a new episode where `mask` [n] is true, from `uniforms` [n, state_size] in [0, 1)."""
        low = torch.as_tensor(self.reset_low, dtype=torch.float64, device=self.device)
        high = torch.as_tensor(self.reset_high, dtype=torch.float64, device=self.device)
        fresh = low + (high - low) * uniforms.to(torch.float64)
        fresh = self.initial(fresh)
        self.state = torch.where(mask.unsqueeze(1), fresh, self.state)
        self.elapsed = torch.where(mask, torch.zeros_like(self.elapsed), self.elapsed)

    def initial(self, state: Tensor) -> Tensor:
        """An initial state as gymnasium stores it (Acrobot rounds it to float32)."""
        return state

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Advance every environment by its action [n]: (reward, terminated, truncated), each [n].

        No automatic reset: the caller reads the final observation and then calls `reset`.
        """
        self.state, reward, terminated = self.dynamics(self.state, actions)
        self.elapsed = self.elapsed + 1
        truncated = self.elapsed >= self.max_steps
        return reward, terminated, truncated

    def dynamics(self, state: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def observe(self) -> Tensor:
        """The observation of every environment, float32 [n, observation_size]."""
        return self.state.to(torch.float32)

    def state_dict(self) -> dict[str, Tensor]:
        return {"state": self.state.clone(), "elapsed": self.elapsed.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.state = state["state"].to(self.device, torch.float64).clone()
        self.elapsed = state["elapsed"].to(self.device).clone()

    def copy(self, dsts: Tensor, srcs: Tensor) -> None:
        """Environments `dsts` take the states of `srcs` (index tensors of equal length)."""
        self.state[dsts] = self.state[srcs]
        self.elapsed[dsts] = self.elapsed[srcs]


class BatchedCartPole(BatchedEnv):
    """gymnasium's CartPole-v1: push the cart left or right to keep the pole up; +1 a step, 500 steps at most."""

    observation_size, actions, state_size, max_steps = 4, 2, 4, 500
    reset_low, reset_high = -0.05, 0.05
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masspole + masscart
    polemass_length = masspole * length
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def dynamics(self, state: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Euler integration of the cart and pole, as gymnasium's `kinematics_integrator="euler"`."""
        x, x_dot, theta, theta_dot = state.unbind(1)
        force = torch.where(actions == 1, self.force_mag, -self.force_mag).to(torch.float64)
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        temp = (force + self.polemass_length * theta_dot.square() * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta.square() / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        terminated = (x < -self.x_threshold) | (x > self.x_threshold) | \
            (theta < -self.theta_threshold) | (theta > self.theta_threshold)
        reward = torch.ones_like(x)  # gymnasium pays 1 on the step that terminates too
        return torch.stack((x, x_dot, theta, theta_dot), 1), reward, terminated


class BatchedAcrobot(BatchedEnv):
    """gymnasium's Acrobot-v1: swing the two links' tip above a line; -1 a step until it does, 500 steps at most."""

    observation_size, actions, state_size, max_steps = 6, 3, 4, 500
    reset_low, reset_high = -0.1, 0.1
    dt = 0.2
    max_vel_1, max_vel_2 = 4 * math.pi, 9 * math.pi

    def initial(self, state: Tensor) -> Tensor:
        return state.to(torch.float32).to(torch.float64)  # gymnasium draws float64 and stores float32

    @staticmethod
    def _derivatives(s: Tensor, torque: Tensor) -> Tensor:
        """d/dt of (theta1, theta2, dtheta1, dtheta2): the "book" equations, unit masses and lengths."""
        m1 = m2 = l1 = i1 = i2 = 1.0
        lc1 = lc2 = 0.5
        g = 9.8
        theta1, theta2, dtheta1, dtheta2 = s.unbind(1)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * torch.cos(theta2)) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * torch.cos(theta2)) + i2
        phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (-m2 * l1 * lc2 * dtheta2**2 * torch.sin(theta2)
                - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * torch.sin(theta2)
                + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - math.pi / 2) + phi2)
        ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * torch.sin(theta2) - phi2) / (
            m2 * lc2**2 + i2 - d2**2 / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), 1)

    @staticmethod
    def _wrap(x: Tensor) -> Tensor:
        """Angles into [-pi, pi] by whole turns, as gymnasium's `wrap` (a no-op inside the range)."""
        turns = torch.where(x > math.pi, torch.ceil((x - math.pi) / (2 * math.pi)),
                            torch.where(x < -math.pi, -torch.ceil((-math.pi - x) / (2 * math.pi)), 0.0))
        return x - turns * (2 * math.pi)

    def dynamics(self, state: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One fourth-order Runge-Kutta step of `dt`, angles wrapped, velocities bounded."""
        torque = actions.to(torch.float64) - 1.0  # actions 0, 1, 2 apply -1, 0, +1
        dt, dt2 = self.dt, self.dt / 2.0
        k1 = self._derivatives(state, torque)
        k2 = self._derivatives(state + dt2 * k1, torque)
        k3 = self._derivatives(state + dt2 * k2, torque)
        k4 = self._derivatives(state + dt * k3, torque)
        s = state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        s = torch.stack((self._wrap(s[:, 0]), self._wrap(s[:, 1]), s[:, 2].clamp(-self.max_vel_1, self.max_vel_1),
                         s[:, 3].clamp(-self.max_vel_2, self.max_vel_2)), 1)
        terminated = -torch.cos(s[:, 0]) - torch.cos(s[:, 1] + s[:, 0]) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(torch.float64)
        return s, reward, terminated

    def observe(self) -> Tensor:
        s = self.state
        return torch.stack((torch.cos(s[:, 0]), torch.sin(s[:, 0]), torch.cos(s[:, 1]), torch.sin(s[:, 1]),
                            s[:, 2], s[:, 3]), 1).to(torch.float32)


class BatchedContinuousEnv(BatchedEnv):
    """An environment whose actions are real vectors [n, action_size], clipped to [-max_action, max_action]."""

    actions = 0  # no discrete actions
    action_size: int
    max_action: float


def _f32(x: Tensor) -> Tensor:
    """`x` rounded to float32 and kept in float64: where gymnasium computes in float32."""
    return x.to(torch.float32).to(torch.float64)


class BatchedPendulum(BatchedContinuousEnv):
    """gymnasium's Pendulum-v1: swing a pendulum up and hold it with a torque in [-2, 2]; 200 steps, no termination.

    The reward is -(angle² + 0.1 velocity² + 0.001 torque²), between about -16.3 and 0 a step.
    """

    observation_size, action_size, state_size, max_steps = 3, 1, 2, 200
    reset_low, reset_high = (-math.pi, -1.0), (math.pi, 1.0)
    max_action = 2.0
    max_speed, dt, g = 8.0, 0.05, 10.0

    def dynamics(self, state: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Semi-implicit Euler; the torque is float32 as gymnasium's action space is, its terms rounded there too."""
        th, thdot = state.unbind(1)
        u = actions.reshape(-1).to(torch.float32).clamp(-self.max_action, self.max_action)
        normalized = torch.remainder(th + math.pi, 2 * math.pi) - math.pi
        u = u.to(torch.float64)  # float32 values: each product below rounded to float32, as numpy does
        costs = normalized.square() + 0.1 * thdot.square() + _f32(_f32(torch.tensor(0.001)) * _f32(u.square()))
        thdot = thdot + (3 * self.g / 2 * torch.sin(th) + _f32(3.0 * u)) * self.dt
        thdot = thdot.clamp(-self.max_speed, self.max_speed)
        th = th + thdot * self.dt
        return torch.stack((th, thdot), 1), -costs, torch.zeros_like(th, dtype=torch.bool)

    def observe(self) -> Tensor:
        th, thdot = self.state.unbind(1)
        return torch.stack((torch.cos(th), torch.sin(th), thdot), 1).to(torch.float32)


class BatchedMountainCarContinuous(BatchedContinuousEnv):
    """gymnasium's MountainCarContinuous-v0: drive an underpowered car up a hill; +100 at the flag, -0.1 force² a step.

    999 steps at most. gymnasium keeps the state in float32 after the first step (float64 before,
    from its reset), so each operation here rounds where gymnasium's would.
    """

    observation_size, action_size, state_size, max_steps = 2, 1, 2, 999
    reset_low, reset_high = (-0.6, 0.0), (-0.4, 0.0)
    max_action = 1.0
    min_position, max_position, max_speed, goal_position, power = -1.2, 0.6, 0.07, 0.45, 0.0015

    def dynamics(self, state: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        first = self.elapsed == 0  # the state is still gymnasium's float64 reset
        in_dtype = lambda x: torch.where(first, x, _f32(x))  # noqa: E731 (an operation in the state's dtype)
        position, velocity = state.unbind(1)
        action = actions.reshape(-1).to(torch.float32)
        force = action.clamp(-self.max_action, self.max_action).to(torch.float64)
        slope = 0.0025 * torch.cos(in_dtype(3 * position))
        # a force inside the bounds stays float32, and so does its term; a clipped one is a Python float
        inside = _f32(_f32(force * _f32(torch.tensor(self.power, dtype=torch.float64))) - _f32(slope))
        clipped = action.abs() > self.max_action
        term = torch.where(clipped, in_dtype(force * self.power - slope), inside)
        velocity = in_dtype(velocity + term).clamp(-self.max_speed, self.max_speed)
        position = torch.where(first, position + velocity, _f32(position + _f32(velocity)))
        position = position.clamp(self.min_position, self.max_position)
        velocity = torch.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= 0)
        reward = torch.where(terminated, 100.0, 0.0) - action.to(torch.float64).square() * 0.1
        return _f32(torch.stack((position, velocity), 1)), reward, terminated


ENVIRONMENTS: dict[str, type[BatchedEnv]] = {
    "CartPole-v1": BatchedCartPole, "Acrobot-v1": BatchedAcrobot, "Pendulum-v1": BatchedPendulum,
    "MountainCarContinuous-v0": BatchedMountainCarContinuous}
