"""PBT for PPO agents on gymnasium's CartPole-v1 (discrete actions) and Pendulum-v1 (a continuous torque).

PPO (Schulman et al. 2017) as practitioners run it: 8 environments, a rollout of 64 steps each,
advantages by GAE, then several epochs of minibatches on the clipped surrogate objective, with
advantages normalised per minibatch, an entropy bonus, gradients clipped to norm 0.5 and Adam.
PBT explores the learning rate `lr`, the clip range `clip_range`, the entropy cost `ent_coef`
and GAE's `gae_lambda`. One interval (`train()`) is INTERVAL_STEPS environment steps; the score is
the mean return of the member's last WINDOW finished episodes. On Pendulum the policy is Gaussian
with a learned, state-independent log standard deviation per action dimension.

`CartPole` and `Pendulum` are one agent each on gymnasium's environments (the local engine);
their `vectorized` twins train the whole population as one batched model on the same
environments written in torch (poptrain.torch.ppo, poptrain.torch.envs), for the vectorized engine.

    poptrain run examples/rl_ppo_cartpole.toml
    poptrain run examples/rl_ppo_pendulum.toml
"""

from __future__ import annotations

import torch

from poptrain.torch.envs import BatchedCartPole, BatchedPendulum
from poptrain.torch.ppo import PPOPopulation, clipped_surrogate, normalise, value_error
from rl_a2c import A2C, INTERVAL_STEPS, MAX_GRAD_NORM, NUM_ENVS, VF_COEF, WINDOW

ROLLOUT = 64  # steps per environment between updates (512 rows)
MINIBATCHES = 4  # per epoch


class PPO(A2C):
    """One PPO agent on NUM_ENVS copies of a gymnasium environment (A2C's agent, rollout and scoring; PPO's update)."""

    epochs = 4  # passes over each rollout
    clip_value = False  # clip the value error to clip_range around the rollout's values

    def train(self) -> None:
        """INTERVAL_STEPS environment steps, one PPO update every ROLLOUT steps."""
        for _ in range(INTERVAL_STEPS // (NUM_ENVS * ROLLOUT)):
            self.update()

    def update(self) -> None:
        """Collect ROLLOUT steps from every environment, then `epochs` passes of MINIBATCHES clipped-surrogate steps."""
        obs, actions, advantages, targets, values = (x.flatten(0, 1) for x in self.rollout(ROLLOUT))
        with torch.no_grad():
            old_logp, _ = self.policy(obs, actions)
        clip = self.hparams["clip_range"]
        for _ in range(self.epochs):
            order = torch.randperm(len(obs), generator=self.generator)
            for rows in order.chunk(MINIBATCHES):
                logp, entropy = self.policy(obs[rows], actions[rows])
                value = self.critic(obs[rows]).squeeze(-1)
                errors = value_error(value, values[rows], targets[rows], clip if self.clip_value else None)
                loss = (clipped_surrogate(logp, old_logp[rows], normalise(advantages[rows]), clip).mean()
                        - self.hparams["ent_coef"] * entropy.mean() + VF_COEF * errors.mean())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
                self.optimizer.step()


class CartPole(PPO):
    """PPO on CartPole-v1 (return 500 at most)."""

    env_id = "CartPole-v1"


class Pendulum(PPO):
    """PPO on Pendulum-v1 (return about -1,200 for a random policy, -150 to -200 for a good swing-up).

    Pendulum's rewards (down to -16 a step) are scaled by 0.1 for learning and discounted by 0.9,
    the usual settings for it; ten epochs per rollout.
    """

    env_id = "Pendulum-v1"
    gamma, reward_scale, epochs = 0.9, 0.1, 10


class BatchedSettings:
    """The single agents' settings, for their batched twins."""

    num_envs, rollout, interval_steps, minibatches = NUM_ENVS, ROLLOUT, INTERVAL_STEPS, MINIBATCHES
    vf_coef, max_grad_norm, window = VF_COEF, MAX_GRAD_NORM, WINDOW


class CartPolePopulation(BatchedSettings, PPOPopulation):
    """Every CartPole member as one batched model, its environments in torch."""

    env = BatchedCartPole
    gamma, reward_scale, epochs, clip_value = CartPole.gamma, CartPole.reward_scale, CartPole.epochs, CartPole.clip_value


class PendulumPopulation(BatchedSettings, PPOPopulation):
    """Every Pendulum member as one batched model, its environments in torch."""

    env = BatchedPendulum
    gamma, reward_scale, epochs, clip_value = Pendulum.gamma, Pendulum.reward_scale, Pendulum.epochs, Pendulum.clip_value


CartPole.vectorized = CartPolePopulation
Pendulum.vectorized = PendulumPopulation
