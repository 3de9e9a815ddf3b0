"""PBT for TD3 agents on Pendulum-v1: an off-policy agent, whose replay buffer an exploit copies with its weights.

The whole population is one batched model (`poptrain.torch.td3.TD3Population`) on Pendulum-v1
written in torch (`poptrain.torch.envs.BatchedPendulum`), for the vectorized engine. PBT explores the
learning rate `lr`, the target networks' step `tau` and the exploration and target-smoothing
noise (`expl_noise`, `policy_noise`). One interval is 1,000 environment steps of one agent (five
200-step episodes); the score is the mean return of its last five finished episodes.

    poptrain run examples/rl_pendulum.toml

`Pendulum` copies the source's replay buffer on exploit; `PendulumOwnBuffer` (trainable =
"rl_td3:PendulumOwnBuffer") keeps the copy's own.
"""

from __future__ import annotations

from poptrain.torch.envs import BatchedPendulum
from poptrain.torch.td3 import TD3Population


class Pendulum(TD3Population):
    """TD3 on Pendulum-v1 (return about -1,200 for random torques, -150 or better once swung up and held)."""

    env = BatchedPendulum
    gamma = 0.98
    interval_steps = 1000
    buffer_size = 20_000  # every transition of a 20-interval run
    batch_size = 128
    learning_starts = 1000


class PendulumOwnBuffer(Pendulum):
    """The same agents; on exploit the copy keeps its own replay buffer."""

    copy_buffer = False
