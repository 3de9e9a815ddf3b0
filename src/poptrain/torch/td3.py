"""A population of TD3 agents as one batched model, each member's replay buffer on the member axis.

TD3 (twin delayed DDPG, Fujimoto et al. 2018) on a continuous-action batched environment: a
deterministic actor explores with Gaussian noise; two critics learn from minibatches of the
member's own replay buffer, towards the smaller of their target networks' values at a smoothed
target action; the actor and the target networks move every `policy_delay` critic updates. Every
member's actor, critics, targets, two Adam states, buffer, environments and generator are stacked
along the member axis, so one `train()` acts, stores and updates all of them; a member's randomness
(weights, initial states, noise, minibatches) comes from its own generator only, so it trains the
same alone as inside any population.

Exploit copies the source's networks, targets, Adam states and generator and, with `copy_buffer`
(the default), its replay buffer; with `copy_buffer = False` the copy keeps its own buffer (the
experience of its own earlier policy). The score is the mean return of the member's last
`window` finished training episodes, as for the A2C population.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..records import Hparams
from .episodes import BatchedEpisodes
from .envs import BatchedContinuousEnv
from .optim import BatchedAdam, _along, _along_each
from .replay import ReplayBuffers
from .rl import build_network, forward
from .stacked import StackedModules
from .vectorized import BatchedTrainable, upload

Tensor = torch.Tensor


class TD3Population(BatchedEpisodes, BatchedTrainable):
    """TD3 agents for every member at once; subclasses set `env` (a BatchedContinuousEnv class).

    Hyperparameters varied per member: `lr` (both Adams), `tau` (the target networks' step),
    `expl_noise` and `policy_noise` (the exploration and target-smoothing noise, as fractions
    of the largest action). One `train()` is `interval_steps` environment steps per member, one
    update after each step of its `num_envs` environments once `learning_starts` steps (of
    uniformly random actions) are done.
    """

    hparams = ("lr", "tau", "expl_noise", "policy_noise")
    env: type[BatchedContinuousEnv]
    num_envs = 1  # environments per member
    interval_steps = 1000  # environment steps per member in one train(); a multiple of num_envs
    buffer_size = 50_000  # transitions each member's replay buffer holds; a multiple of num_envs
    batch_size = 128
    learning_starts = 1000  # environment steps per member with random actions before the first update
    gamma = 0.99
    policy_delay = 2
    noise_clip = 0.5  # of the target-smoothing noise, as a fraction of the largest action
    window = 5  # finished episodes the score averages
    hidden = 64
    copy_buffer = True  # an exploit copies the source's replay buffer too

    def __init__(self, hparams: Sequence[Hparams], seeds: Sequence[int], device: str = "cpu") -> None:
        super().__init__(hparams, seeds, device)
        for name in ("interval_steps", "buffer_size"):
            if getattr(self, name) % self.num_envs:
                raise ValueError(f"{name} ({getattr(self, name)}) must be a multiple of num_envs ({self.num_envs})")
        obs, act = self.env.observation_size, self.env.action_size
        nets = [(build_network(obs, act, g, self.hidden, 0.01, nn.ReLU),
                 build_network(obs + act, 1, g, self.hidden, 1.0, nn.ReLU),
                 build_network(obs + act, 1, g, self.hidden, 1.0, nn.ReLU)) for g in self.generators]
        self.actor, self.critic1, self.critic2 = (StackedModules([n[i] for n in nets], self.device) for i in range(3))
        self.population = self.actor
        self.targets = {name: {k: v.clone() for k, v in net.params.items()} for name, net in self.networks().items()}
        lr = [h["lr"] for h in hparams]
        self.actor_optimizer = BatchedAdam(self.actor.params, lr=lr)
        self.optimizer = BatchedAdam(self._critic_params(), lr=lr)  # the critics'
        for name in ("tau", "expl_noise", "policy_noise"):
            setattr(self, name, torch.tensor([float(h[name]) for h in hparams], device=self.device))
        self.buffer = ReplayBuffers(self.size, self.buffer_size, {"obs": (obs,), "action": (act,), "reward": (),
                                                                  "next_obs": (obs,), "terminated": ()}, self.device)
        self.updates = 0  # critic updates so far, the same for every member
        self.start_episodes()

    def networks(self) -> dict[str, StackedModules]:
        return {"actor": self.actor, "critic1": self.critic1, "critic2": self.critic2}

    def _critic_params(self) -> dict[str, Tensor]:
        return {**{f"critic1.{k}": v for k, v in self.critic1.params.items()},
                **{f"critic2.{k}": v for k, v in self.critic2.params.items()}}

    # --- the networks ---------------------------------------------------------------------------------

    def act(self, params: dict[str, Tensor], obs: Tensor) -> Tensor:
        """The deterministic actions [P, B, action_size] of actors with `params` for observations [P, B, obs]."""
        return self.env.max_action * torch.tanh(forward(self.actor, params, obs))

    def value(self, critic: StackedModules, params: dict[str, Tensor], obs: Tensor, action: Tensor) -> Tensor:
        """A critic's values [P, B] of (observation, action) pairs."""
        return forward(critic, params, torch.cat((obs, action), -1)).squeeze(-1)

    # --- training -------------------------------------------------------------------------------------

    def _interval_noise(self, steps: int) -> dict[str, Tensor]:
        """Every draw this interval needs, [P, steps, ...] each, from each member's own generator."""
        e, a, b = self.num_envs, self.env.action_size, self.batch_size
        shapes = {"random_action": (steps, e, a), "explore": (steps, e, a), "reset": (steps, e, self.env.state_size),
                  "batch": (steps, b), "smooth": (steps, b, a)}
        normal = ("explore", "smooth")
        draws = {k: [] for k in shapes}
        for g in self.generators:
            for k, shape in shapes.items():
                draws[k].append(torch.randn(shape, generator=g) if k in normal else torch.rand(shape, generator=g))
        return {k: upload(torch.stack(v), self.device) for k, v in draws.items()}

    def train(self) -> None:
        """`interval_steps` environment steps per member, each followed by one update once learning has started."""
        steps = self.interval_steps // self.num_envs
        noise = self._interval_noise(steps)
        for t in range(steps):
            self.collect(noise["random_action"][:, t], noise["explore"][:, t], noise["reset"][:, t])
            if self.buffer.stored >= max(self.learning_starts, self.batch_size):
                self.update(noise["batch"][:, t], noise["smooth"][:, t])

    @torch.no_grad()
    def collect(self, random_action: Tensor, explore: Tensor, reset: Tensor) -> None:
        """One step of every member's environments, its transitions stored in the member's buffer."""
        p, e = self.size, self.num_envs
        obs, high = self.observe(), self.env.max_action
        if self.buffer.stored < self.learning_starts:
            action = (2 * random_action - 1) * high
        else:
            action = (self.act(self.actor.params, obs) + _along(self.expl_noise, explore) * high * explore).clamp(-high, high)
        reward, terminated, truncated = (x.view(p, e) for x in self.envs.step(action.view(p * e, -1)))
        ended = terminated | truncated
        self.returns += reward
        self._record(ended)
        # the observation after the step, before a reset: a cut episode is bootstrapped from it, an ended one not
        self.buffer.add({"obs": obs, "action": action, "reward": reward.to(torch.float32), "next_obs": self.observe(),
                         "terminated": terminated.to(torch.float32)})
        self.envs.reset(ended.view(-1), reset.reshape(p * e, -1))
        self.env_steps += e

    def update(self, batch_uniforms: Tensor, smooth: Tensor) -> None:
        """One critic step for every member on a minibatch of its own buffer; the actor and targets every `policy_delay`."""
        batch = self.buffer.sample(batch_uniforms)
        obs, high = batch["obs"], self.env.max_action
        with torch.no_grad():
            noise = (_along(self.policy_noise, smooth) * smooth).clamp(-self.noise_clip, self.noise_clip) * high
            next_action = (self.act(self.targets["actor"], batch["next_obs"]) + noise).clamp(-high, high)
            following = torch.minimum(self.value(self.critic1, self.targets["critic1"], batch["next_obs"], next_action),
                                      self.value(self.critic2, self.targets["critic2"], batch["next_obs"], next_action))
            target = batch["reward"] + self.gamma * (1.0 - batch["terminated"]) * following
        params = {k: v.detach().requires_grad_(True) for k, v in self.optimizer.params.items()}
        with torch.enable_grad():
            q1 = self.value(self.critic1, {k[8:]: v for k, v in params.items() if k.startswith("critic1.")}, obs,
                            batch["action"])
            q2 = self.value(self.critic2, {k[8:]: v for k, v in params.items() if k.startswith("critic2.")}, obs,
                            batch["action"])
            loss = (q1 - target).square().mean(1) + (q2 - target).square().mean(1)
            # member i's parameters reach only loss i: the gradient of the sum is each member's own
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
        self.optimizer.step(dict(zip(params, grads)))
        self.updates += 1
        if self.updates % self.policy_delay == 0:
            self._update_actor(obs)

    def _update_actor(self, obs: Tensor) -> None:
        """One actor step up the first critic's value, then every target network a step `tau` towards its network."""
        params = {k: v.detach().requires_grad_(True) for k, v in self.actor.params.items()}
        with torch.enable_grad():
            loss = -self.value(self.critic1, self.critic1.params, obs, self.act(params, obs)).mean(1)
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
        self.actor_optimizer.step(dict(zip(params, grads)))
        with torch.no_grad():
            for name, net in self.networks().items():
                targets, current = list(self.targets[name].values()), [net.params[k] for k in self.targets[name]]
                torch._foreach_lerp_(targets, current, _along_each(self.tau, [t.dim() for t in targets]))

    # --- hyperparameters, exploit, checkpoints --------------------------------------------------------

    def set_hparams(self, member: int, hparams: Hparams) -> None:
        """Write a member's lr (both Adams), tau and noise scales."""
        super().set_hparams(member, hparams)  # refuses a name it cannot vary; the critics' lr
        self.actor_optimizer.set_hparams(member, hparams)
        for name in ("tau", "expl_noise", "policy_noise"):
            if name in hparams:
                getattr(self, name)[member] = float(hparams[name])

    def export_members(self, srcs: Sequence[int]) -> dict[str, Any]:
        """Exploit: networks, targets, Adam states, generator, recent returns and (with `copy_buffer`) the replay buffer."""
        srcs = list(srcs)
        return {**super().export_members(srcs),  # the actor, the critics' Adam, the generator
                "critic1": self.critic1.export_members(srcs), "critic2": self.critic2.export_members(srcs),
                "targets": {n: {k: t[srcs] for k, t in target.items()} for n, target in self.targets.items()},
                "actor_optimizer": self.actor_optimizer.export_members(srcs), "episodes": self.episodes_of(srcs),
                **({"buffer": self.buffer.export_members(srcs)} if self.copy_buffer else {})}

    def import_members(self, dsts: Sequence[int], exported: dict[str, Any]) -> None:
        """The copies take what `export_members` gathered, then their environments restart."""
        dsts = list(dsts)
        super().import_members(dsts, exported)
        self.critic1.import_members(dsts, exported["critic1"])
        self.critic2.import_members(dsts, exported["critic2"])
        with torch.no_grad():
            for n, target in self.targets.items():
                for k, t in target.items():
                    t[dsts] = exported["targets"][n][k].to(t.device)
        self.actor_optimizer.import_members(dsts, exported["actor_optimizer"])
        if self.copy_buffer:
            self.buffer.import_members(dsts, exported["buffer"])
        self.restart_copies(dsts, exported["episodes"])

    def state_dict(self) -> dict[str, Any]:
        """The whole population: networks, targets, both Adams, generators, buffers, environments and episodes."""
        return {**super().state_dict(), "critics": {"critic1": self.critic1.state_dict(), "critic2": self.critic2.state_dict()},
                "targets": {n: {k: v.clone() for k, v in t.items()} for n, t in self.targets.items()},
                "actor_optimizer": self.actor_optimizer.state_dict(), "buffer": self.buffer.state_dict(),
                "updates": self.updates, **self.episodes_state(),
                "hparams": {k: getattr(self, k).clone() for k in ("tau", "expl_noise", "policy_noise")}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.critic1.load_state_dict(state["critics"]["critic1"])
        self.critic2.load_state_dict(state["critics"]["critic2"])
        self.targets = {n: {k: v.to(self.device).clone() for k, v in t.items()} for n, t in state["targets"].items()}
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.updates = int(state["updates"])
        self.load_episodes_state(state)
        for k, v in state["hparams"].items():
            setattr(self, k, v.to(self.device).clone())
