"""Each member's batched environments and episode returns, for a population of RL agents (on-policy or off-policy).

A member has `num_envs` environments of the class `env`; its score is the mean return of its last
`window` finished episodes (the paper's choice: evaluating spends no environment steps). Its
environments start from states drawn from its own generator, so it trains the same alone as
inside any population.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

from .envs import BatchedEnv

Tensor = torch.Tensor
log = logging.getLogger("poptrain")


class BatchedEpisodes:
    """Environments, returns under way, the last `window` finished returns and env steps, per member.

    A mixin for a `BatchedTrainable` (which sets `size`, `device` and `generators`).
    """

    env: type[BatchedEnv]
    num_envs: int
    window: int
    size: int
    device: torch.device
    generators: list[torch.Generator]

    def start_episodes(self) -> None:
        """Make every member's environments and start their first episodes."""
        p, e = self.size, self.num_envs
        self.envs = self.env(p * e, self.device)
        self.window = max(self.window, e)  # several episodes of one member may end in one step
        self.returns = torch.zeros(p, e, dtype=torch.float64, device=self.device)  # of the episodes under way
        self.recent = torch.zeros(p, self.window + 1, device=self.device)  # the last column takes no-op writes
        self.finished = torch.zeros(p, dtype=torch.long, device=self.device)  # episodes finished, ever
        self.env_steps = torch.zeros(p, dtype=torch.long, device=self.device)
        self.envs.reset(torch.ones(p * e, dtype=torch.bool, device=self.device), self._reset_uniforms(range(p)))

    def compile(self, mode: str | None = None, backend: str | None = None) -> None:
        """Not supported for RL populations: the step is many small ops around an environment; trains eagerly."""
        log.warning("%s does not compile: training eagerly", type(self).__name__)

    def _reset_uniforms(self, members: Sequence[int]) -> Tensor:
        """Initial-state uniforms [len(members) * num_envs, state_size] from each member's generator."""
        draws = [torch.rand(self.num_envs, self.env.state_size, generator=self.generators[m]) for m in members]
        return torch.cat(draws).to(self.device)

    def observe(self) -> Tensor:
        """Every member's current observations [P, num_envs, observation_size]."""
        return self.envs.observe().view(self.size, self.num_envs, -1)

    def _record(self, ended: Tensor) -> None:
        """Move the returns of episodes that ended into each member's last `window` returns."""
        position = (self.finished.unsqueeze(1) + ended.long().cumsum(1) - 1) % self.window
        slot = torch.where(ended, position, self.window)  # an episode under way writes to the spare column
        self.recent.scatter_(1, slot, self.returns.to(torch.float32))
        self.finished += ended.sum(1)
        self.returns = torch.where(ended, 0.0, self.returns)

    def evaluate(self) -> list[dict[str, float]]:
        """Each member's mean return over its last `window` finished episodes (under-way ones before any ends)."""
        count = self.finished.clamp(max=self.window)
        mean = self.recent[:, :self.window].sum(1) / count.clamp(min=1)
        score = torch.where(count > 0, mean, self.returns.mean(1).to(torch.float32))
        return [{"return": s, "episodes": float(n), "env_steps": float(k)}
                for s, n, k in zip(score.tolist(), self.finished.tolist(), self.env_steps.tolist())]

    def episodes_of(self, srcs: list[int]) -> dict[str, Tensor]:
        """The recent returns an exploit copies from `srcs` (gathered), for `restart_copies`."""
        return {"recent": self.recent[srcs], "finished": self.finished[srcs]}

    def restart_copies(self, dsts: list[int], episodes: dict[str, Tensor]) -> None:
        """After an exploit: the copies take their sources' recent returns (`episodes_of`), and their environments restart.

        Their episodes under way are dropped (their returns belong to no policy), and their new
        episodes start from states drawn from their (copied) generators.
        """
        self.recent[dsts] = episodes["recent"].to(self.device)
        self.finished[dsts] = episodes["finished"].to(self.device)
        self.returns[dsts] = 0.0
        mask = torch.zeros(self.size, self.num_envs, dtype=torch.bool, device=self.device)
        mask[dsts] = True
        uniforms = torch.zeros(self.size, self.num_envs, self.env.state_size, device=self.device)
        uniforms[dsts] = self._reset_uniforms(dsts).view(len(dsts), self.num_envs, -1)
        self.envs.reset(mask.view(-1), uniforms.view(self.size * self.num_envs, -1))

    def episodes_state(self) -> dict[str, Any]:
        """The environments and episode statistics, for a checkpoint."""
        return {"envs": self.envs.state_dict(),
                "episodes": {k: getattr(self, k).clone() for k in ("returns", "recent", "finished", "env_steps")}}

    def load_episodes_state(self, state: dict[str, Any]) -> None:
        self.envs.load_state_dict(state["envs"])
        for k, v in state["episodes"].items():
            setattr(self, k, v.to(self.device).clone())
