"""A population of actor-critic (A2C) agents as one batched model, their environments stepped as one batch.

Every member has its own actor and critic (stacked along the member axis, as `StackedModules` does),
its own Adam state, its own `num_envs` environments and its own episode statistics; one call to
`train()` acts, steps and updates all of them. A member's randomness (initial weights, initial
states of its environments, its actions) is drawn from its own generator only, so a member trains
the same alone as inside any population.

On an environment with continuous actions (`BatchedContinuousEnv`) the actor outputs the means of
a Gaussian policy whose log standard deviations are parameters of the member, not of the state;
its samples are clipped to the action bounds before they reach the environment.

The algorithm, per update: `rollout` steps in each environment; advantages by GAE with the
member's own lambda; loss = policy gradient - entropy cost x entropy + value coefficient x value
error; each member's gradient clipped to its own norm; one Adam step. An episode cut by the time
limit is bootstrapped with the critic's value of its last observation. The score is the mean
return of the member's last `window` finished episodes (the paper's choice: no extra environment
steps are spent on evaluation).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from ..records import Hparams
from .envs import BatchedContinuousEnv, BatchedEnv
from .episodes import BatchedEpisodes
from .optim import BatchedAdam, _along
from .stacked import StackedModules
from .vectorized import BatchedTrainable, upload

Tensor = torch.Tensor


def build_network(inputs: int, outputs: int, generator: torch.Generator, hidden: int = 64,
                  last_gain: float = 1.0, activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """An inputs→hidden→hidden→outputs MLP, orthogonally initialised from `generator` (zero biases).

    Tanh, as usual for small control agents (ReLU learned CartPole and Acrobot more slowly here);
    `forward` computes it through a sigmoid, which torch runs several times faster on the CPU.

    The hidden layers get gain sqrt(2), the last `last_gain` (0.01 for a policy, so that its first
    actions are near uniform; 1 for a value), as is usual for actor-critic agents.
    """
    with torch.random.fork_rng(devices=[]):  # the layers' own initialisation is overwritten: keep it off the global RNG
        net = nn.Sequential(nn.Linear(inputs, hidden), activation(), nn.Linear(hidden, hidden), activation(),
                            nn.Linear(hidden, outputs))
    with torch.no_grad():
        layers = [m for m in net if isinstance(m, nn.Linear)]
        for i, layer in enumerate(layers):
            nn.init.orthogonal_(layer.weight, math.sqrt(2) if i < len(layers) - 1 else last_gain, generator=generator)
            layer.bias.zero_()
    return net


def build_agent(observations: int, actions: int, generator: torch.Generator, hidden: int = 64) -> tuple[nn.Module, nn.Module]:
    """An agent's actor (observation → action logits) and critic (observation → value), from one generator."""
    return (build_network(observations, actions, generator, hidden, 0.01),
            build_network(observations, 1, generator, hidden, 1.0))


def gae(rewards: Tensor, ends: Tensor, values: Tensor, next_value: Tensor, gamma: float,
        lam: Tensor | float) -> Tensor:
    """Generalised advantage estimates, backwards along the first (time) axis of rewards, ends and values.

    `next_value` is the value after the last step; `ends` marks steps after which no value follows.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        following = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        alive = 1.0 - ends[t].to(rewards.dtype)
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * lam * alive * last
        advantages[t] = last
    return advantages


LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, action: Tensor) -> Tensor:
    """The log-density of `action` under independent Gaussians, summed over the last (action) axis."""
    return (-0.5 * ((action - mean) / log_std.exp()).square() - log_std - LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """The entropy of independent Gaussians, summed over the last (action) axis."""
    return (0.5 + LOG_SQRT_2PI + log_std).sum(-1)


def forward(population: StackedModules, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Every member's outputs for its own inputs x [P, B, features], differentiable in `params`.

    Tanh is 2 sigmoid(2x) - 1 (equal to float rounding). A layer with one output (the critic's
    last) is a product and a sum rather than a batched matrix product: bmm takes another kernel
    for a single member there, whose rounding would make a member alone differ from the same
    member inside a population in the last bit.
    """
    if population.layers is None:  # not a plain stack of Linear layers: vmap
        return vmap(lambda p, b, xb: functional_call(population.template, (p, b), (xb,)))(params, population.buffers, x)
    for layer in population.layers:
        if isinstance(layer, str):
            weight, bias = params[layer + "weight"], params.get(layer + "bias")
            if weight.shape[1] == 1:
                x = (x * weight[:, 0].unsqueeze(1)).sum(-1, keepdim=True)
            else:
                x = torch.bmm(x, weight.transpose(1, 2))
            if bias is not None:
                x = x + bias.unsqueeze(1)
        elif type(layer) is nn.Tanh:
            x = 2 * torch.sigmoid(2 * x) - 1  # tanh, in a third to a fifth of the time torch.tanh takes on the CPU
        else:
            x = layer(x)
    return x


class ActorCriticPopulation(BatchedEpisodes, BatchedTrainable):
    """A2C agents for every member at once on a batched environment; subclasses set `env` (a BatchedEnv class).

    Hyperparameters varied per member: `lr` (Adam), `ent_coef` (the entropy cost) and `gae_lambda`.
    One `train()` is `interval_steps` environment steps per member.
    """

    hparams = ("lr", "ent_coef", "gae_lambda")
    env: type[BatchedEnv]
    num_envs = 8  # environments per member
    rollout = 8  # steps per environment between updates
    interval_steps = 2048  # environment steps per member in one train(); a multiple of num_envs * rollout
    gamma = 0.99
    reward_scale = 1.0  # rewards are multiplied by it for learning (the returns recorded are the environment's)
    vf_coef = 0.5
    max_grad_norm = 0.5
    window = 16  # finished episodes the score averages (at least num_envs)
    hidden = 64
    log_std_init = 0.0  # a Gaussian policy's initial log standard deviation (continuous actions)

    def __init__(self, hparams: Sequence[Hparams], seeds: Sequence[int], device: str = "cpu") -> None:
        super().__init__(hparams, seeds, device)
        per_update = self.num_envs * self.rollout
        if self.interval_steps % per_update:
            raise ValueError(f"interval_steps ({self.interval_steps}) must be a multiple of num_envs x rollout ({per_update})")
        p = self.size
        self.continuous = issubclass(self.env, BatchedContinuousEnv)
        outputs = self.env.action_size if self.continuous else self.env.actions
        agents = [build_agent(self.env.observation_size, outputs, g, self.hidden) for g in self.generators]
        self.actor = StackedModules([a for a, _ in agents], self.device)
        self.critic = StackedModules([c for _, c in agents], self.device)
        self.population = self.actor
        params = {**{f"actor.{k}": v for k, v in self.actor.params.items()},
                  **{f"critic.{k}": v for k, v in self.critic.params.items()}}  # the same tensors: updated in place
        if self.continuous:
            self.log_std = torch.full((p, outputs), float(self.log_std_init), device=self.device)
            params["log_std"] = self.log_std
        self.optimizer = BatchedAdam(params, lr=[h["lr"] for h in hparams], eps=1e-5)
        self.ent_coef = torch.tensor([float(h["ent_coef"]) for h in hparams], device=self.device)
        self.gae_lambda = torch.tensor([float(h["gae_lambda"]) for h in hparams], device=self.device)
        self.start_episodes()

    # --- randomness: each member draws only from its own generator ---------------------------------

    @property
    def action_noise(self) -> int:
        """Uniforms one action takes: one for a discrete action, one per dimension of a continuous one."""
        return self.env.action_size if self.continuous else 1

    def _interval_noise(self, updates: int) -> list[Tensor]:
        """Every uniform this interval needs, each tensor [P, updates, ...]: here one, [P, updates, rollout,
        num_envs, action_noise + state_size], for the action and for a reset if that step ends the episode."""
        shape = (updates, self.rollout, self.num_envs, self.action_noise + self.env.state_size)
        return [upload(torch.stack([torch.rand(shape, generator=g) for g in self.generators]), self.device)]

    # --- training -------------------------------------------------------------------------------------

    def train(self) -> None:
        """`interval_steps` environment steps and their updates for every member."""
        updates = self.interval_steps // (self.num_envs * self.rollout)
        noise = self._interval_noise(updates)
        for u in range(updates):
            self.update(*(n[:, u] for n in noise))

    def _sample(self, obs: Tensor, uniforms: Tensor) -> tuple[Tensor, Tensor]:
        """Every member's actions for its observations [P, E, features] from its own uniforms, and their log-probabilities.

        Inverse-CDF sampling from the member's own uniforms: the same action whatever the population.
        """
        out = forward(self.actor, self.actor.params, obs)
        if self.continuous:
            u = uniforms.clamp(1e-7, 1 - 1e-7)
            normal = math.sqrt(2) * torch.erfinv(2 * u - 1)
            log_std = self.log_std.unsqueeze(1)
            action = out + log_std.exp() * normal
            return action, gaussian_log_prob(out, log_std, action)
        probs = F.softmax(out, dim=-1)
        action = (uniforms[..., 0].unsqueeze(-1) > probs.cumsum(-1)).sum(-1).clamp(max=self.env.actions - 1)
        return action, F.log_softmax(out, dim=-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def _policy(self, params: dict[str, Tensor], obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probabilities of `actions` and the policy's entropies [P, B], differentiable in `params`."""
        out = forward(self.actor, {k[6:]: v for k, v in params.items() if k.startswith("actor.")}, obs)
        if self.continuous:
            log_std = params["log_std"].unsqueeze(1)
            return gaussian_log_prob(out, log_std, actions), gaussian_entropy(log_std).expand(out.shape[:2])
        logp_all = F.log_softmax(out, dim=-1)
        logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return logp, -(logp_all.exp() * logp_all).sum(-1)

    def _value(self, params: dict[str, Tensor], obs: Tensor) -> Tensor:
        """The critic's values [P, B], differentiable in `params`."""
        return forward(self.critic, {k[7:]: v for k, v in params.items() if k.startswith("critic.")}, obs).squeeze(-1)

    def _env_actions(self, action: Tensor) -> Tensor:
        """Actions as the batched environment takes them: a flat index, or a vector clipped to the bounds."""
        if self.continuous:
            return action.reshape(-1, self.env.action_size).clamp(-self.env.max_action, self.env.max_action)
        return action.reshape(-1)

    @torch.no_grad()
    def _act(self, noise: Tensor) -> tuple[Tensor, ...]:
        """`rollout` steps of every environment: observations, actions, their log-probabilities, rewards,
        episode ends, values (each [P, rollout, num_envs, ...]) and the values after the last step [P, num_envs]."""
        p, e, t_max, k = self.size, self.num_envs, self.rollout, self.action_noise
        obs_buf, act_buf, logp_buf, rew_buf, end_buf, last_buf, cut_buf = [], [], [], [], [], [], []
        obs = self.observe()
        for t in range(t_max):
            action, logp = self._sample(obs, noise[:, t, :, :k])
            reward, terminated, truncated = (x.view(p, e) for x in self.envs.step(self._env_actions(action)))
            ended = terminated | truncated
            self.returns += reward
            self._record(ended)
            # a time limit is not a terminal state: the cut episode is bootstrapped from its last observation
            last_buf.append(self.observe())
            cut_buf.append(truncated & ~terminated)
            self.envs.reset(ended.view(-1), noise[:, t, :, k:].reshape(p * e, -1))
            obs_buf.append(obs)
            act_buf.append(action)
            logp_buf.append(logp)
            rew_buf.append(reward.to(torch.float32) * self.reward_scale)
            end_buf.append(ended)
            obs = self.observe()
        # the critic's values of every step's observations, of its last ones (before a reset) and of the next ones,
        # in one pass after the rollout: no step asks the host whether an episode was cut (a sync on a GPU), and
        # one pass over every row costs less than one per step
        values = forward(self.critic, self.critic.params, torch.cat([*obs_buf, *last_buf, obs], 1)).squeeze(-1)
        values, last_values, next_value = values[:, :t_max * e], values[:, t_max * e:2 * t_max * e], values[:, -e:]
        rewards = torch.stack(rew_buf, 1) + self.gamma * last_values.view(p, t_max, e) * torch.stack(cut_buf, 1)
        self.env_steps += e * t_max
        return (torch.stack(obs_buf, 1), torch.stack(act_buf, 1), torch.stack(logp_buf, 1), rewards,
                torch.stack(end_buf, 1), values.reshape(p, t_max, e), next_value)

    def advantages(self, rewards: Tensor, ends: Tensor, values: Tensor, next_value: Tensor) -> Tensor:
        """GAE over the rollout, every member with its own lambda (all tensors [P, T, E], next_value [P, E])."""
        time_first = [x.transpose(0, 1) for x in (rewards, ends, values)]
        return gae(*time_first, next_value, self.gamma, self.gae_lambda.view(-1, 1)).transpose(0, 1)

    def flat_rollout(self, noise: Tensor) -> tuple[Tensor, ...]:
        """One rollout as [P, rollout x num_envs, ...] rows: observations, actions, their log-probabilities,
        advantages, value targets and values."""
        obs, actions, logp, rewards, ends, values, next_value = self._act(noise)
        advantages = self.advantages(rewards, ends, values, next_value)
        targets = advantages + values
        p = self.size
        return (obs.reshape(p, -1, obs.shape[-1]), actions.reshape(p, -1, *actions.shape[3:]), logp.reshape(p, -1),
                advantages.reshape(p, -1), targets.reshape(p, -1), values.reshape(p, -1))

    def update(self, noise: Tensor) -> None:
        """One rollout and one A2C step for every member; `noise` [P, rollout, num_envs, action_noise + state_size]."""
        obs, actions, _, advantages, targets, _ = self.flat_rollout(noise)

        def loss(params: dict[str, Tensor]) -> Tensor:
            logp, entropy = self._policy(params, obs, actions)
            value = self._value(params, obs)
            return (-(advantages * logp).mean(1) - self.ent_coef * entropy.mean(1)
                    + self.vf_coef * 0.5 * (targets - value).square().mean(1))

        self.descend(loss)

    def descend(self, loss: Callable[[dict[str, Tensor]], Tensor]) -> None:
        """One Adam step of every member on its own `loss(params)` [P], its gradient clipped to its own norm."""
        params = {k: v.detach().requires_grad_(True) for k, v in self.optimizer.params.items()}
        with torch.enable_grad():
            # member i's parameters reach only loss i: the gradient of the sum is each member's own
            grads = dict(zip(params, torch.autograd.grad(loss(params).sum(), list(params.values()))))
        # [P, parameters] summed along its rows: the same order of additions whatever the population's size
        norms = torch.stack([g.square().flatten(1).sum(1) for g in grads.values()], 1).sum(1).sqrt()
        scale = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)  # each member clipped to its own norm
        self.optimizer.step({k: g * _along(scale, g) for k, g in grads.items()})

    # --- scores, hyperparameters, exploit, checkpoints ------------------------------------------------

    def set_hparams(self, member: int, hparams: Hparams) -> None:
        """Write a member's lr, entropy cost and GAE lambda."""
        unknown = sorted(set(hparams) - set(self.hparams))
        if unknown:
            raise ValueError(f"{type(self).__name__} cannot vary {', '.join(map(repr, unknown))} per member")
        self.optimizer.set_hparams(member, hparams)
        if "ent_coef" in hparams:
            self.ent_coef[member] = float(hparams["ent_coef"])
        if "gae_lambda" in hparams:
            self.gae_lambda[member] = float(hparams["gae_lambda"])

    def export_members(self, srcs: Sequence[int]) -> dict[str, Any]:
        """Exploit: networks, Adam state, generator and recent returns are copied (the actor is `population`)."""
        srcs = list(srcs)
        return {**super().export_members(srcs), "critic": self.critic.export_members(srcs),
                "episodes": self.episodes_of(srcs), **({"log_std": self.log_std[srcs]} if self.continuous else {})}

    def import_members(self, dsts: Sequence[int], exported: dict[str, Any]) -> None:
        """The copies take what `export_members` gathered, then their environments restart."""
        dsts = list(dsts)
        super().import_members(dsts, exported)
        self.critic.import_members(dsts, exported["critic"])
        if self.continuous:
            self.log_std[dsts] = exported["log_std"].to(self.device)
        self.restart_copies(dsts, exported["episodes"])

    def state_dict(self) -> dict[str, Any]:
        """The whole population: networks, Adam, generators, environments and episode statistics."""
        return {"size": self.size, "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": [g.get_state() for g in self.generators],
                **self.episodes_state(),
                **({"log_std": self.log_std.clone()} if self.continuous else {}),
                "hparams": {k: getattr(self, k).clone() for k in self.hparams if k != "lr"}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        for g, rng in zip(self.generators, state["rng"]):
            g.set_state(rng)
        self.load_episodes_state(state)
        for k, v in state["hparams"].items():
            setattr(self, k, v.to(self.device).clone())
        if self.continuous:
            self.log_std.copy_(state["log_std"])  # in place: the optimiser holds this tensor
