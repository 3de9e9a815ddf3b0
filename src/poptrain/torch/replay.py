"""Every member's replay buffer as tensors with the member axis first: write, sample and copy all members at once."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

Tensor = torch.Tensor


class ReplayBuffers:
    """`capacity` transitions per member for each field ([P, capacity, *shape]), oldest overwritten first.

    Every member writes the same number of transitions at each step, so one position serves them
    all and no count is read back from the device.
    """

    def __init__(self, size: int, capacity: int, fields: Mapping[str, tuple[int, ...]],
                 device: str | torch.device = "cpu") -> None:
        self.size, self.capacity, self.device = size, capacity, torch.device(device)
        self.data = {name: torch.zeros(size, capacity, *shape, device=self.device) for name, shape in fields.items()}
        self.stored = 0  # transitions each member has written, ever
        self._rows = torch.arange(size, device=self.device).unsqueeze(1)

    @property
    def filled(self) -> int:
        """How many transitions each member's buffer holds."""
        return min(self.stored, self.capacity)

    def add(self, transitions: Mapping[str, Tensor]) -> None:
        """Write `n` transitions per member (each field [P, n, *shape]; `capacity` a multiple of n)."""
        n = next(iter(transitions.values())).shape[1]
        start = self.stored % self.capacity
        for name, t in transitions.items():
            self.data[name][:, start:start + n] = t
        self.stored += n

    def sample(self, uniforms: Tensor) -> dict[str, Tensor]:
        """Each member's transitions at the places that `uniforms` [P, B] in [0, 1) pick among its own: [P, B, *shape]."""
        index = (uniforms * self.filled).long().clamp(max=self.filled - 1)  # float rounding may reach `filled`
        return {name: t[self._rows, index] for name, t in self.data.items()}

    @torch.no_grad()
    def copy_members(self, dsts: Sequence[int], srcs: Sequence[int]) -> None:
        """Each `dsts[i]` takes `srcs[i]`'s whole buffer, as it was before any copy."""
        self.import_members(dsts, self.export_members(srcs))

    def export_members(self, srcs: Sequence[int]) -> dict[str, Tensor]:
        """The buffers of `srcs` (gathered copies), for `import_members` here or in another shard."""
        return {k: t[list(srcs)] for k, t in self.data.items()}

    @torch.no_grad()
    def import_members(self, dsts: Sequence[int], exported: dict[str, Tensor]) -> None:
        for k, t in self.data.items():
            t[list(dsts)] = exported[k].to(t.device)

    def state_dict(self) -> dict[str, Any]:
        return {"stored": self.stored, "data": {k: v.clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stored = int(state["stored"])
        self.data = {k: v.to(self.device).clone() for k, v in state["data"].items()}
