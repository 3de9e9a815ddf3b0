"""The Policy: ready, exploit and explore as one decision, with every generator derived here.

Engines, users' own loops and the analysis all go through it, so a run makes the same
decisions whatever executes it, and the analysis can rebuild what an explore did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..records import Continue, Decision, Exploit, Hparams, MemberView, Standings
from ..space import validate_hparams

EXPLOIT_RNG, EXPLORE_RNG, GENERATION_RNG = 1, 2, 3

HparamsOf = Callable[[int], "Hparams | None"]  # a source's hyperparameters; None if it cannot be copied


def decision_rng(seed: int, member: int, step: int, purpose: int) -> np.random.Generator:
    """The generator for one decision: fixed by seed, member and step, whatever the scheduling."""
    return np.random.default_rng([seed, member, step, purpose])


@dataclass(frozen=True)
class Policy:
    """What PBT decides for a member at a step: Continue, or Exploit(source, explored hparams).

    `exploit` None means no exploit at all (random search at equal compute): never ready to copy.
    Stateless: plain data in, decisions out; what a process remembers between the members of one
    synchronous generation lives in ask/tell (`asktell.generation`).
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
        """What the exploit and explore strategies read beyond the latest scores (`policy.registry.READS`)."""
        return (frozenset() if self.exploit is None else self.exploit.reads) | self.explore_reads

    @property
    def explore_reads(self) -> frozenset[str]:
        """What the explore strategy reads (one that reads anything gets it through `explore_batch`)."""
        return frozenset(self.explore.reads)

    @property
    def history(self) -> int:
        """How many of each member's latest intervals the strategies reading "history" need (at least 1)."""
        wanted = [s.history for s in (self.exploit, self.explore) if s is not None and "history" in s.reads]
        return max(wanted, default=1)

    @property
    def window(self) -> int:
        """How many recent scores per member the exploit strategy reads (1: the latest only)."""
        return self.exploit.window if "recent" in self.reads else 1

    def is_ready(self, step: int, last_ready: int) -> bool:
        """Whether a member that reached `step` (last ready at `last_ready`) takes a decision now."""
        return self.ready.is_ready(step, last_ready)

    def choose(self, member: MemberView, standings: Standings, step: int) -> Decision:
        """The exploit strategy's pick for one member: Continue, or Exploit(source) (with hparams if its rule names them)."""
        if self.exploit is None:
            return Continue()
        return self.exploit.decide(member, standings, decision_rng(self.seed, member.id, step, EXPLOIT_RNG))

    def generation(self, standings: Standings, step: int) -> Generation:
        """Every member's pick at one synchronous step, ranked once with one shared tie-break.

        Truncation then copies exactly its bottom quantile; a member whose drawn source is itself
        copying in this generation continues instead, so no copy depends on the order of copies.
        """
        if self.exploit is None:
            return Generation(step, standings, {int(m): Continue() for m in standings.ids})
        shared = standings.with_tiebreak(np.random.default_rng([self.seed, step, GENERATION_RNG]))
        picks = {}
        for m in shared.ids:
            view = shared.view(int(m))
            picks[int(m)] = self.choose(view, shared, step) if view is not None else Continue()
        copying = {m for m, d in picks.items() if isinstance(d, Exploit)}
        picks = {m: Continue() if isinstance(d, Exploit) and d.source in copying else d for m, d in picks.items()}
        return Generation(step, shared, picks)

    def choose_generation(self, standings: Standings, step: int) -> dict[int, Decision]:
        """The picks of `generation(standings, step)`, by member."""
        return self.generation(standings, step).picks

    def explore_from(self, member: int, step: int, source_hparams: Hparams, standings: Standings | None = None) -> Hparams:
        """The hyperparameters `member` takes after copying a source that had `source_hparams`.

        An explore that reads the standings (PB2) gets `standings`; without any it explores as
        its own fallback says.
        """
        if standings is None or not self.explore_reads:
            return self._explore_alone(member, step, source_hparams)
        return self.explore.explore_batch([(member, dict(source_hparams))], self.space,
                                          [self.explore_rng(member, step)], standings)[0]

    def _explore_alone(self, member: int, step: int, source_hparams: Hparams) -> Hparams:
        # the explore strategy on a copy of the source's hparams, with the member's generator at `step`
        return self.explore.explore(dict(source_hparams), self.space, self.explore_rng(member, step))

    def explore_generation(self, generation: Generation, known: Mapping[int, Hparams]) -> dict[int, Hparams]:
        """Every copying member's explore at one synchronous step, taken together in id order.

        An explore that reads the standings knows the points chosen before it (PB2 does not send
        two copies to one point); a source's hparams are `known`'s or its latest interval's, so
        every process deciding the same generation computes the same batch.
        """
        step, standings = generation.step, generation.standings
        requests = []
        for m in sorted(generation.picks):
            pick = generation.picks[m]
            if not isinstance(pick, Exploit) or pick.hparams is not None:
                continue
            source = known.get(m)
            if source is None:
                past = standings.history.get(pick.source, ())
                source = past[-1].hparams if past else None
            if source is not None:
                requests.append((m, dict(source)))
        if not self.explore_reads:
            return {m: self._explore_alone(m, step, h) for m, h in requests}
        explored = self.explore.explore_batch(requests, self.space, [self.explore_rng(m, step) for m, _ in requests],
                                              standings)
        return {m: h for (m, _), h in zip(requests, explored)}

    def explore_rng(self, member: int, step: int) -> np.random.Generator:
        """The generator of `member`'s explore at `step` (the analysis replays it to name each change)."""
        return decision_rng(self.seed, member, step, EXPLORE_RNG)

    def complete(self, member: int, step: int, pick: Decision, hparams_of: HparamsOf,
                 standings: Standings | None = None, explored: Hparams | None = None) -> Decision:
        """Turn a pick into the decision: the source's hparams explored, or Continue if it has none.

        `explored` is the member's explore when it was taken already (with its generation's).
        """
        if not isinstance(pick, Exploit):
            return Continue()
        source = hparams_of(pick.source)
        if source is None:
            return Continue()
        if pick.hparams is not None:  # the exploit rule named the hyperparameters: taken as they are
            return Exploit(pick.source, validate_hparams(self.space, pick.hparams, "exploit"))
        return Exploit(pick.source, explored if explored is not None else self.explore_from(member, step, source, standings))

    def decide(self, member: MemberView, standings: Standings, step: int, hparams_of: HparamsOf) -> Decision:
        """One member's decision at a ready point, asynchronously (the paper's PBT)."""
        return self.complete(member.id, step, self.choose(member, standings, step), hparams_of, standings)

    def decide_generation(self, standings: Standings, step: int, hparams_of: HparamsOf) -> dict[int, Decision]:
        """Every member's decision at one synchronous ready point."""
        generation = self.generation(standings, step)
        sources = {m: hparams_of(p.source) for m, p in generation.picks.items() if isinstance(p, Exploit)}
        explored = self.explore_generation(generation, {m: h for m, h in sources.items() if h is not None})
        return {m: self.complete(m, step, p, hparams_of, explored=explored.get(m)) for m, p in generation.picks.items()}


@dataclass(frozen=True)
class Generation:
    """One synchronous step's picks, with the standings they were ranked in (their shared tie-break included)."""

    step: int
    standings: Standings
    picks: dict[int, Decision]
