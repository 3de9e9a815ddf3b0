"""The Policy: ready, exploit and explore as one decision, with every generator derived here.

Engines, users' own loops and the analysis all go through it, so a run makes the same
decisions whatever executes it, and the analysis can rebuild what an explore did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..population import Continue, Decision, Exploit, Hparams, MemberView, Standings

EXPLOIT_RNG, EXPLORE_RNG, GENERATION_RNG = 1, 2, 3

HparamsOf = Callable[[int], "Hparams | None"]  # a source's hyperparameters; None if it cannot be copied


def decision_rng(seed: int, member: int, step: int, purpose: int) -> np.random.Generator:
    """The generator for one decision: fixed by seed, member and step, whatever the scheduling."""
    return np.random.default_rng([seed, member, step, purpose])


@dataclass(frozen=True)
class Policy:
    """What PBT decides for a member at a step: Continue, or Exploit(source, explored hparams).

    `exploit` None means no exploit at all (random search at equal compute): never ready to copy.
    """

    ready: Any
    exploit: Any
    explore: Any
    space: Mapping[str, Any]
    seed: int

    @classmethod
    def of(cls, spec: Any) -> "Policy":
        """The policy of an experiment spec (anything with ready, exploit, explore, space and seed)."""
        return cls(spec.ready, spec.exploit, spec.explore, spec.space, spec.seed)

    @property
    def reads(self) -> frozenset[str]:
        """What the exploit strategy reads beyond the latest scores (`policy.registry.READS`); engines supply it."""
        if self.exploit is None:
            return frozenset()
        declared = getattr(self.exploit, "reads", None)
        if declared is not None:
            return frozenset(declared)
        return frozenset({"recent"}) if int(getattr(self.exploit, "window", 1)) > 1 else frozenset()  # a duck-typed one

    @property
    def window(self) -> int:
        """How many recent scores per member the exploit strategy reads (1: the latest only)."""
        return int(getattr(self.exploit, "window", 1)) if "recent" in self.reads else 1

    def is_ready(self, step: int, last_ready: int) -> bool:
        """Whether a member that reached `step` (last ready at `last_ready`) takes a decision now."""
        return self.ready.is_ready(step, last_ready)

    def choose(self, member: MemberView, standings: Standings, step: int) -> Decision:
        """The exploit strategy's pick for one member: Continue, or Exploit(source) without hparams."""
        if self.exploit is None:
            return Continue()
        return self.exploit.decide(member, standings, decision_rng(self.seed, member.id, step, EXPLOIT_RNG))

    def choose_generation(self, standings: Standings, step: int) -> dict[int, Decision]:
        """Every member's pick at one synchronous step, ranked once with one shared tie-break.

        Truncation then copies exactly its bottom quantile; a member whose drawn source is itself
        copying in this generation continues instead, so no copy depends on the order of copies.
        """
        if self.exploit is None:
            return {int(m): Continue() for m in standings.ids}
        shared = standings.with_tiebreak(np.random.default_rng([self.seed, step, GENERATION_RNG]))
        picks = {}
        for m in shared.ids:
            view = shared.view(int(m))
            picks[int(m)] = self.choose(view, shared, step) if view is not None else Continue()
        copying = {m for m, d in picks.items() if isinstance(d, Exploit)}
        return {m: Continue() if isinstance(d, Exploit) and d.source in copying else d for m, d in picks.items()}

    def explore_from(self, member: int, step: int, source_hparams: Hparams) -> Hparams:
        """The hyperparameters `member` takes after copying a source that had `source_hparams`."""
        return self.explore.explore(dict(source_hparams), self.space, self.explore_rng(member, step))

    def explore_rng(self, member: int, step: int) -> np.random.Generator:
        """The generator of `member`'s explore at `step` (the analysis replays it to name each change)."""
        return decision_rng(self.seed, member, step, EXPLORE_RNG)

    def complete(self, member: int, step: int, pick: Decision, hparams_of: HparamsOf) -> Decision:
        """Turn a pick into the decision: the source's hparams explored, or Continue if it has none."""
        if not isinstance(pick, Exploit):
            return Continue()
        source = hparams_of(pick.source)
        if source is None:
            return Continue()
        return Exploit(pick.source, self.explore_from(member, step, source))

    def decide(self, member: MemberView, standings: Standings, step: int, hparams_of: HparamsOf) -> Decision:
        """One member's decision at a ready point, asynchronously (the paper's PBT)."""
        return self.complete(member.id, step, self.choose(member, standings, step), hparams_of)

    def decide_generation(self, standings: Standings, step: int, hparams_of: HparamsOf) -> dict[int, Decision]:
        """Every member's decision at one synchronous ready point."""
        return {m: self.complete(m, step, pick, hparams_of)
                for m, pick in self.choose_generation(standings, step).items()}
