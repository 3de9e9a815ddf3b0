"""A population of PPO agents as one batched model: the A2C population's rollout, PPO's update.

Per update, every member collects `rollout` steps in each of its `num_envs` environments (as
`ActorCriticPopulation` does), computes GAE advantages with its own lambda, then runs `epochs`
passes over those rows in `minibatches` minibatches, each in an order drawn from the member's own
generator (random keys sorted on the device: no host sync). The loss is PPO's clipped surrogate
with the member's own clip range, its advantages normalised per member and minibatch, minus the
entropy cost, plus the value error (clipped to the same range around the rollout's values when
`clip_value` is set); each member's gradient is clipped to its own norm before its Adam step.

Hyperparameters varied per member: `lr`, `ent_coef`, `gae_lambda` and `clip_range`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..records import Hparams
from .rl import ActorCriticPopulation
from .vectorized import upload

Tensor = torch.Tensor


def clipped_surrogate(logp: Tensor, old_logp: Tensor, advantages: Tensor, clip_range: Tensor | float) -> Tensor:
    """PPO's policy loss per row: the worse of the ratio times the advantage and its clipped ratio times it."""
    ratio = (logp - old_logp).exp()
    low, high = 1 - clip_range, 1 + clip_range
    return torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, low, high))


def value_error(value: Tensor, old_value: Tensor, target: Tensor, clip_range: Tensor | float | None) -> Tensor:
    """Half the squared value error per row; with `clip_range`, the worse of it and the error of the value
    kept within `clip_range` of the rollout's."""
    error = (value - target).square()
    if clip_range is not None:
        clipped = old_value + torch.clamp(value - old_value, -clip_range, clip_range)
        error = torch.max(error, (clipped - target).square())
    return 0.5 * error


def normalise(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    """Advantages scaled to mean 0 and standard deviation 1 along the last axis (each member's own rows)."""
    mean = advantages.mean(-1, keepdim=True)
    return (advantages - mean) / (advantages.std(-1, keepdim=True) + eps)


class PPOPopulation(ActorCriticPopulation):
    """PPO agents for every member at once on a batched environment; subclasses set `env`."""

    hparams = ("lr", "ent_coef", "gae_lambda", "clip_range")
    num_envs = 8
    rollout = 64  # steps per environment between updates
    interval_steps = 2048
    epochs = 4  # passes over each rollout
    minibatches = 4  # per pass
    clip_value = False  # clip the value error to clip_range around the rollout's values
    normalise_advantages = True

    def __init__(self, hparams: Sequence[Hparams], seeds: Sequence[int], device: str = "cpu") -> None:
        rows = self.num_envs * self.rollout
        if rows % self.minibatches:
            raise ValueError(f"num_envs x rollout ({rows}) must be a multiple of minibatches ({self.minibatches})")
        super().__init__(hparams, seeds, device)
        self.clip_range = torch.tensor([float(h["clip_range"]) for h in hparams], device=self.device)

    def _interval_noise(self, updates: int) -> list[Tensor]:
        """The rollouts' uniforms, then random keys [P, updates, epochs, rows] whose order shuffles each epoch."""
        shape = (updates, self.rollout, self.num_envs, self.action_noise + self.env.state_size)
        keys = (updates, self.epochs, self.num_envs * self.rollout)
        draws = [(torch.rand(shape, generator=g), torch.rand(keys, generator=g)) for g in self.generators]
        return [upload(torch.stack([d[i] for d in draws]), self.device) for i in range(2)]

    def update(self, noise: Tensor, keys: Tensor) -> None:
        """One rollout, then `epochs` x `minibatches` PPO steps for every member; `keys` [P, epochs, rows]."""
        rows = self.flat_rollout(noise)
        size = rows[0].shape[1] // self.minibatches
        order = keys.argsort(-1)
        clip = self.clip_range.view(-1, 1)
        for epoch in range(self.epochs):
            for m in range(self.minibatches):
                index = order[:, epoch, m * size:(m + 1) * size]
                obs, actions, old_logp, advantages, targets, old_values = (_take(x, index) for x in rows)
                if self.normalise_advantages:
                    advantages = normalise(advantages)

                def loss(params: dict[str, Tensor]) -> Tensor:
                    logp, entropy = self._policy(params, obs, actions)
                    value = self._value(params, obs)
                    errors = value_error(value, old_values, targets, clip if self.clip_value else None)
                    return (clipped_surrogate(logp, old_logp, advantages, clip).mean(1)
                            - self.ent_coef * entropy.mean(1) + self.vf_coef * errors.mean(1))

                self.descend(loss)

    def set_hparams(self, member: int, hparams: Hparams) -> None:
        """Write a member's lr, entropy cost, GAE lambda and clip range."""
        super().set_hparams(member, hparams)
        if "clip_range" in hparams:
            self.clip_range[member] = float(hparams["clip_range"])


def _take(x: Tensor, index: Tensor) -> Tensor:
    """Each member's rows `index` [P, M] of x [P, N, ...]."""
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))
