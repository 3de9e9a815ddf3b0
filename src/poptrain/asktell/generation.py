"""A synchronous generation as one process sees it: ranked once, its explores taken together once.

The policy is pure: every process deciding a generation computes the same picks and explores
from the same scores. This memo only spares a process that decides several members of one
generation (a worker handed them one after another) from ranking the population again for each.
"""

from __future__ import annotations

from typing import Any, Callable

from ..policy import Policy
from ..policy.decision import Generation
from ..records import Continue, Decision, Exploit, Hparams, Standings


class GenerationMemo:
    """The latest generation this process ranked, and the batch of explores taken for it."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._key: Any = None
        self._generation: Generation | None = None
        self._explored: dict[int, Hparams] | None = None

    def generation(self, key: Any, step: int, read: Callable[[], Standings]) -> Generation:
        """The generation at `step` whose scores `key` identifies, ranked once (`read` gives its standings)."""
        if self._generation is None or self._key != key:
            self._key, self._generation, self._explored = key, self.policy.generation(read(), step), None
        return self._generation

    def pick(self, member: int) -> Decision:
        """`member`'s pick in the current generation (Continue if it has none)."""
        return self._generation.picks.get(member, Continue()) if self._generation is not None else Continue()

    def complete(self, member: int, pick: Decision, source_hparams: Hparams) -> Decision:
        """`member`'s decision: an explore that reads the standings comes from the generation's one batch."""
        generation = self._generation
        assert generation is not None, "rank the generation first"
        explored = None
        if isinstance(pick, Exploit) and pick.hparams is None and self.policy.explore_reads:
            if self._explored is None:
                self._explored = self.policy.explore_generation(generation, {member: source_hparams})
            explored = self._explored.get(member)
        return self.policy.complete(member, generation.step, pick, lambda _: source_hparams, explored=explored)
