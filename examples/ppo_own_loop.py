"""Your own PPO script, in one file in CleanRL's style, training members of a PBT population.

    poptrain create examples/ppo_own_loop.toml --storage sqlite:///runs/ppo.db      # once
    python examples/ppo_own_loop.py sqlite:///runs/ppo.db &                          # as many processes
    python examples/ppo_own_loop.py sqlite:///runs/ppo.db                            # as you like

The script is an ordinary PPO loop (arguments at the top, the loop top to bottom, gymnasium's
vector environments); four places join it to the population: `poptrain.connect` once, `ask` for
a member (its seed, its hyperparameters and the state to start from), `tell` after each interval
of `--interval-steps` environment steps (the score, and the state to checkpoint), and, when
`tell` answers `Exploit`, loading the source's state with the explored hyperparameters. Every
process runs members until none is left; a process that dies leaves its member to the others.
"""

import argparse
from collections import deque

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions.categorical import Categorical

import poptrain

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("storage", help="the store's URL, e.g. sqlite:///runs/ppo.db")
parser.add_argument("--name", default="ppo", help="the experiment's name")
parser.add_argument("--env-id", default="CartPole-v1", help="a gymnasium environment with discrete actions")
parser.add_argument("--num-envs", type=int, default=4, help="parallel environments")
parser.add_argument("--num-steps", type=int, default=128, help="steps per environment in each rollout")
parser.add_argument("--interval-steps", type=int, default=4096, help="environment steps between two tells")
parser.add_argument("--num-minibatches", type=int, default=4)
parser.add_argument("--update-epochs", type=int, default=4, help="passes over each rollout")
parser.add_argument("--gamma", type=float, default=0.99)
parser.add_argument("--vf-coef", type=float, default=0.5)
parser.add_argument("--max-grad-norm", type=float, default=0.5)
parser.add_argument("--window", type=int, default=16, help="finished episodes the score averages")
args = parser.parse_args()
batch_size = args.num_envs * args.num_steps
minibatch_size = batch_size // args.num_minibatches
torch.set_num_threads(1)  # several processes share the machine


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        super().__init__()
        obs_size, n_actions = np.prod(envs.single_observation_space.shape), envs.single_action_space.n
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)),
                                    nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        self.actor = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)),
                                   nn.Tanh(), layer_init(nn.Linear(64, n_actions), std=0.01))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        probs = Categorical(logits=self.actor(x))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


envs = gym.vector.SyncVectorEnv([lambda: gym.make(args.env_id) for _ in range(args.num_envs)],
                                autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
pop = poptrain.connect(args.storage, args.name)
live = {}  # members this process trained last: ask hands them back with state None (the live copy is current)
while (member := pop.ask()) is not None:
    if member.state is None and member.id in live:
        agent, optimizer, recent, next_obs = live[member.id]
    else:
        torch.manual_seed(member.seed)
        agent = Agent(envs)
        optimizer = torch.optim.Adam(agent.parameters(), lr=member.hparams["lr"], eps=1e-5)
        recent = deque(maxlen=args.window)  # returns of the last finished episodes: the score
        if member.state is not None:  # resumed, or handed over from a process that stopped
            agent.load_state_dict(member.state["agent"])
            optimizer.load_state_dict(member.state["optimizer"])
            recent.extend(member.state["recent"])
        next_obs, _ = envs.reset(seed=member.seed + member.step)
    episode_returns = np.zeros(args.num_envs)
    rng = np.random.default_rng(member.seed + member.step)  # the minibatches' order

    def state() -> dict:
        return {"agent": agent.state_dict(), "optimizer": optimizer.state_dict(), "recent": list(recent)}

    while member.running:
        h = member.hparams  # the explored values after an exploit
        optimizer.param_groups[0]["lr"] = h["lr"]
        for update in range(args.interval_steps // batch_size):
            obs = torch.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape)
            actions = torch.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape, dtype=torch.long)
            logprobs, rewards, dones, values = (torch.zeros((args.num_steps, args.num_envs)) for _ in range(4))
            next_obs_t = torch.as_tensor(next_obs, dtype=torch.float32)
            for step in range(args.num_steps):
                obs[step] = next_obs_t
                with torch.no_grad():
                    action, logprob, _, value = agent.get_action_and_value(next_obs_t)
                values[step], actions[step], logprobs[step] = value.flatten(), action, logprob
                next_obs, reward, terminations, truncations, _ = envs.step(action.numpy())
                done = np.logical_or(terminations, truncations)  # CleanRL's simplification: a cut episode ends too
                episode_returns += reward
                recent.extend(episode_returns[done].tolist())
                episode_returns[done] = 0.0
                rewards[step], dones[step] = torch.as_tensor(reward), torch.as_tensor(done, dtype=torch.float32)
                next_obs_t = torch.as_tensor(next_obs, dtype=torch.float32)

            # generalised advantage estimation, backwards through the rollout
            with torch.no_grad():
                next_value = agent.get_value(next_obs_t).reshape(1, -1)
                advantages = torch.zeros_like(rewards)
                lastgaelam = 0
                for t in reversed(range(args.num_steps)):
                    nextvalues = next_value if t == args.num_steps - 1 else values[t + 1]
                    nextnonterminal = 1.0 - dones[t]
                    delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                    advantages[t] = lastgaelam = delta + args.gamma * h["gae_lambda"] * nextnonterminal * lastgaelam
                returns = advantages + values

            b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
            b_logprobs, b_actions, b_advantages = logprobs.reshape(-1), actions.reshape(-1), advantages.reshape(-1)
            b_returns, b_values = returns.reshape(-1), values.reshape(-1)
            for epoch in range(args.update_epochs):
                b_inds = rng.permutation(batch_size)
                for start in range(0, batch_size, minibatch_size):
                    mb_inds = b_inds[start:start + minibatch_size]
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds], b_actions[mb_inds])
                    ratio = (newlogprob - b_logprobs[mb_inds]).exp()
                    mb_advantages = b_advantages[mb_inds]
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                    pg_loss1 = -mb_advantages * ratio
                    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - h["clip_range"], 1 + h["clip_range"])
                    pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                    v_loss = 0.5 * ((newvalue.view(-1) - b_returns[mb_inds]) ** 2).mean()
                    loss = pg_loss - h["ent_coef"] * entropy.mean() + v_loss * args.vf_coef
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()

        score = float(np.mean(recent)) if recent else float(episode_returns.mean())
        decision = pop.tell(member, {"return": score, "episodes": float(len(recent))}, state=state)
        if isinstance(decision, poptrain.Exploit):  # the source's agent, Adam state and recent returns
            agent.load_state_dict(decision.state["agent"])
            optimizer.load_state_dict(decision.state["optimizer"])
            recent = deque(decision.state["recent"], maxlen=args.window)
            next_obs, _ = envs.reset(seed=member.seed + member.step)  # the copy's episodes start afresh
            episode_returns = np.zeros(args.num_envs)
    live[member.id] = (agent, optimizer, recent, next_obs)
pop.close()
