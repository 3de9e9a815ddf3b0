"""PBT for actor-critic (A2C) agents on gymnasium's CartPole-v1 and Acrobot-v1, the paper's main domain.

PBT tunes the learning rate, the entropy cost and GAE's lambda while the agents learn, as the
paper did for its A3C agents. One interval (`train()`) is INTERVAL_STEPS environment steps; the
score is the mean return of the member's last WINDOW finished episodes, so evaluating spends no
environment steps. Exploit copies the actor, the critic and Adam's state.

`CartPole` and `Acrobot` are one agent each on gymnasium's own environments (the local engine);
their `vectorized` twins train a whole population as one batched model on environments written
in torch (poptrain.torch.rl, poptrain.torch.envs), for the vectorized engine.

    poptrain run examples/rl_cartpole.toml
    poptrain run examples/rl_cartpole_vectorized.toml
"""

from __future__ import annotations

from collections import deque
from functools import partial

import gymnasium as gym
import numpy as np
import torch
from torch.nn import functional as F

from poptrain.records import Hparams
from poptrain.torch import TorchTrainable
from poptrain.torch.envs import BatchedAcrobot, BatchedCartPole
from poptrain.torch.rl import ActorCriticPopulation, build_agent, gae, gaussian_entropy, gaussian_log_prob

NUM_ENVS = 8  # environments per agent
ROLLOUT = 8  # steps per environment between updates
INTERVAL_STEPS = 2048  # environment steps per interval (32 updates)
GAMMA = 0.99
VF_COEF = 0.5
MAX_GRAD_NORM = 0.5
WINDOW = 16  # finished episodes the score averages


class A2C(TorchTrainable):
    """One A2C agent on NUM_ENVS copies of a gymnasium environment; PBT explores lr, ent_coef and gae_lambda.

    With continuous actions (a Box action space) the policy is Gaussian: the actor gives the means,
    `log_std` (one per action dimension, not a function of the state) the spreads; the actions sent
    to the environment are clipped to its bounds.
    """

    env_id = "CartPole-v1"
    optimizer_hparams = ("lr",)
    gamma = GAMMA
    reward_scale = 1.0  # rewards are multiplied by it for learning (the returns recorded are the environment's)

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        # SAME_STEP: an episode's last observation comes back in `info`, the next episode's first one as obs
        self.envs = gym.vector.SyncVectorEnv([partial(gym.make, self.env_id) for _ in range(NUM_ENVS)],
                                             autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        observations = self.envs.single_observation_space.shape[0]
        space = self.envs.single_action_space
        self.continuous = isinstance(space, gym.spaces.Box)
        outputs = space.shape[0] if self.continuous else int(space.n)
        self.actor, self.critic = build_agent(observations, outputs, self.generator)
        self.model = torch.nn.ModuleDict({"actor": self.actor, "critic": self.critic})
        if self.continuous:
            self.model.log_std = torch.nn.Parameter(torch.zeros(outputs))
            self.low, self.high = torch.as_tensor(space.low), torch.as_tensor(space.high)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=hparams["lr"], eps=1e-5)
        self.recent: deque[float] = deque(maxlen=WINDOW)  # returns of the last finished episodes
        self.env_steps = 0
        self.start_episodes()

    def start_episodes(self) -> None:
        """New episodes in every environment, seeded from the member's generator."""
        seed = int(torch.randint(2**31 - 1, (1,), generator=self.generator))
        obs, _ = self.envs.reset(seed=seed)
        self.obs = torch.as_tensor(obs)
        self.returns = np.zeros(NUM_ENVS)  # of the episodes under way

    def train(self) -> None:
        """INTERVAL_STEPS environment steps, one A2C update every ROLLOUT steps."""
        for _ in range(INTERVAL_STEPS // (NUM_ENVS * ROLLOUT)):
            self.update()

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions for `obs`, drawn from the member's generator."""
        if self.continuous:
            noise = torch.randn(obs.shape[0], len(self.low), generator=self.generator)
            return self.actor(obs) + self.model.log_std.exp() * noise
        return torch.multinomial(F.softmax(self.actor(obs), dim=-1), 1, generator=self.generator).squeeze(1)

    def policy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of `actions` at `obs`, and the policy's entropies there."""
        out = self.actor(obs)
        if self.continuous:
            log_std = self.model.log_std
            return gaussian_log_prob(out, log_std, actions), gaussian_entropy(log_std).expand(out.shape[:-1])
        logp_all = F.log_softmax(out, dim=-1)
        logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return logp, -(logp_all.exp() * logp_all).sum(-1)

    def rollout(self, steps: int) -> tuple[torch.Tensor, ...]:
        """`steps` steps of every environment: observations, actions, advantages and value targets [steps, NUM_ENVS, ...]."""
        observations, actions, rewards, ends = [], [], [], []
        with torch.no_grad():
            for _ in range(steps):
                action = self.sample(self.obs)
                sent = action.clamp(self.low, self.high) if self.continuous else action
                obs, reward, terminated, truncated, info = self.envs.step(sent.numpy())
                self.returns += reward
                ended = terminated | truncated
                for i in np.flatnonzero(ended):
                    self.recent.append(float(self.returns[i]))
                    self.returns[i] = 0.0
                reward = torch.as_tensor(reward, dtype=torch.float32) * self.reward_scale
                cut = truncated & ~terminated  # a time limit is not a terminal state: bootstrap from the last observation
                if cut.any():
                    last = torch.as_tensor(np.stack(info["final_obs"][cut]), dtype=torch.float32)
                    reward[cut] += self.gamma * self.critic(last).squeeze(1)
                observations.append(self.obs)
                actions.append(action)
                rewards.append(reward)
                ends.append(torch.as_tensor(ended, dtype=torch.float32))
                self.obs = torch.as_tensor(obs)
            self.env_steps += NUM_ENVS * steps
            obs = torch.stack(observations)  # [steps, NUM_ENVS, observations]
            values = self.critic(obs).squeeze(-1)
            advantages = gae(torch.stack(rewards), torch.stack(ends), values, self.critic(self.obs).squeeze(-1),
                             self.gamma, self.hparams["gae_lambda"])
        return obs, torch.stack(actions), advantages, advantages + values, values

    def update(self) -> None:
        """Collect ROLLOUT steps from every environment, then one gradient step on the A2C loss."""
        obs, actions, advantages, targets, _ = self.rollout(ROLLOUT)
        logp, entropy = self.policy(obs, actions)
        value = self.critic(obs).squeeze(-1)
        loss = (-(advantages * logp).mean() - self.hparams["ent_coef"] * entropy.mean()
                + VF_COEF * 0.5 * (targets - value).square().mean())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
        self.optimizer.step()

    def evaluate(self) -> dict[str, float]:
        """Mean return of the last WINDOW finished episodes (of the episodes under way, before any ends)."""
        score = float(np.mean(self.recent)) if self.recent else float(np.mean(self.returns))
        return {"return": score, "episodes": float(len(self.recent)), "env_steps": float(self.env_steps)}

    def extra_state(self) -> dict[str, object]:
        return {"recent": list(self.recent), "env_steps": self.env_steps}

    def load_extra_state(self, extra: dict) -> None:
        """The source's recent returns; the episodes under way restart (gymnasium's states are not copied)."""
        self.recent = deque(extra["recent"], maxlen=WINDOW)
        self.env_steps = extra["env_steps"]
        self.start_episodes()


class CartPole(A2C):
    """A2C on CartPole-v1 (return 500 at most)."""

    env_id = "CartPole-v1"


class Acrobot(A2C):
    """A2C on Acrobot-v1 (return -500 at worst, about -60 for a good swing-up)."""

    env_id = "Acrobot-v1"


class BatchedSettings:
    """The single agents' settings, for their batched twins."""

    num_envs, rollout, interval_steps = NUM_ENVS, ROLLOUT, INTERVAL_STEPS
    gamma, vf_coef, max_grad_norm, window = GAMMA, VF_COEF, MAX_GRAD_NORM, WINDOW


class CartPolePopulation(BatchedSettings, ActorCriticPopulation):
    """Every CartPole member as one batched model, its environments in torch."""

    env = BatchedCartPole


class AcrobotPopulation(BatchedSettings, ActorCriticPopulation):
    """Every Acrobot member as one batched model, its environments in torch."""

    env = BatchedAcrobot


CartPole.vectorized = CartPolePopulation
Acrobot.vectorized = AcrobotPopulation
