"""A framework's trainer as a population member: what the Lightning and Hugging Face callbacks share.

A `Seat` is one trainer's place in a stored population. It asks for a member, has the trainer
load that member's state (or the state the trainer started from, for a member with no
checkpoint yet), tells each validation's score, applies exploits to the live model, and, when
its member finishes or leaves, takes the next member that is due (one left by a dead process,
say) until none is left. The callbacks only say how their framework reads and writes state and
hyperparameters.

A trainer that spans several processes (DDP, torchrun) is one member: `connect` sees the
initialised process group and returns a `GroupConnection`, so every rank runs the same seat
and gets the same members and decisions, as long as each rank calls `join`, `tell` and
`close` at the same points (the frameworks' callbacks run on every rank).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping

from .asktell import Connection, GroupConnection, Member, connect
from .asktell.live import check_reduce
from .errors import PoptrainError
from .records import Decision, Finished, Released


class Seat:
    """One trainer's member: ask, load, tell, exploit in place, and take over the next member when done.

    `read` returns the trainer's whole state (model, optimisers, schedulers) as plain data;
    `write(state, hparams)` loads a state (None: keep the live one) and writes the hyperparameters.
    `reduce` ("mean", "min", "max") is told with each score of a member spanning several ranks
    (None: rank 0's score). `lands(names)` returns the hyperparameters the trainer can apply: any
    other in the experiment's space refuses the join, so nothing is recorded that never trained.
    """

    def __init__(self, storage: str, name: str, read: Callable[[], Any], write: Callable[[Any, Mapping[str, Any]], None],
                 worker_id: str | None = None, reduce: str | None = None,
                 lands: Callable[[list[str]], Iterable[str]] | None = None) -> None:
        check_reduce(reduce)
        self.storage, self.name, self.worker_id, self.reduce = storage, name, worker_id, reduce
        self.lands = lands
        self.read, self.write = read, write
        self.pop: Connection | GroupConnection | None = None
        self.member: Member | None = None
        self.initial: Any = None  # the state the trainer started from: a member without a checkpoint starts there
        self._parked: dict[int, _Live] = {}

    @property
    def steps(self) -> int:
        """The experiment's budget in intervals (validations) per member."""
        assert self.pop is not None
        return self.pop.spec.steps

    def join(self) -> Member | None:
        """Connect, remember the starting state, and take the first member (None: the population is done)."""
        if self.pop is None:
            self.pop = connect(self.storage, self.name, self.worker_id)
        if self.lands is not None:
            names = list(self.pop.spec.space)
            ignored = [n for n in names if n not in set(self.lands(names))]
            if ignored:  # refused before a member is taken: nothing is held, nothing recorded
                self.close()
                raise PoptrainError(
                    f"the PBT callback cannot apply {', '.join(map(repr, ignored))} of experiment {self.name!r}'s "
                    f"space: PBT would record values that never trained; name a param-group key of the optimiser "
                    f"(lr, weight_decay, ...), set it in the callback's apply=fn(hparams, ...) hook, or (Lightning) "
                    f"map it to a module attribute with hparam_attributes")
        self.initial = copy.deepcopy(self.read())
        return self._take()

    def tell(self, score: Any) -> Decision:
        """Report this validation's score; apply an exploit to the live trainer; on finish, take the next member."""
        if self.member is None or self.pop is None:
            raise PoptrainError("the PBT callback has no member to report for: the trainer was not started with it")
        member = self.member
        live = _Live(self.read)
        decision = self.pop.tell(member, score, state=live, apply=lambda d: self.write(d.state, d.hparams),
                                 reduce=self.reduce)
        if isinstance(decision, Released):
            # In a synchronous run the population may hand this member back later and read it from
            # what was told last: keep a copy, since the live trainer moves on to another member.
            live.freeze()
        if isinstance(decision, (Finished, Released)):
            self._take()
        return decision

    def close(self) -> None:
        """Give back whatever member this trainer still holds (its last checkpoint is where the next one resumes)."""
        if self.pop is not None:
            self.pop.close()
        self.member = None

    def leave(self) -> None:
        """Give back what this trainer holds without waiting for the other ranks (after an error they may never come)."""
        if isinstance(self.pop, GroupConnection):
            if self.pop.inner is not None:  # rank 0 holds the leases; the others hold nothing to give back
                self.pop.inner.close()
        elif self.pop is not None:
            self.pop.close()
        self.member = None

    def _take(self) -> Member | None:
        assert self.pop is not None
        member = self.pop.ask()
        self.member = member
        if member is not None:
            self.write(member.state if member.state is not None else self.initial, member.hparams)
        return member


class _Live:
    """The trainer's state, read only when a checkpoint is due; frozen when the trainer moves to another member."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read, self.frozen, self.is_frozen = read, None, False

    def freeze(self) -> None:
        self.frozen, self.is_frozen = copy.deepcopy(self.read()), True

    def __call__(self) -> Any:
        return self.frozen if self.is_frozen else self.read()


def write_attributes(obj: Any, attributes: Mapping[str, str], hparams: Mapping[str, Any]) -> None:
    """Write hyperparameters into the attributes the user named (`{"dropout": "drop.p"}`: a dotted path from obj)."""
    for hparam, path in attributes.items():
        if hparam not in hparams:
            raise PoptrainError(f"hparam_attributes names {hparam!r}, which is not in the experiment's space: "
                                f"use one of {sorted(hparams)}")
        target, last = attribute_parent(obj, hparam, path)
        setattr(target, last, hparams[hparam])


def attribute_parent(obj: Any, hparam: str, path: str) -> tuple[Any, str]:
    """The object holding the last attribute of the dotted `path` from obj, and that attribute's name; one clear
    error naming the first part of the path the model lacks."""
    parts = path.split(".")
    target = obj
    for i, part in enumerate(parts):
        if not hasattr(target, part):
            raise PoptrainError(f"hparam_attributes maps {hparam!r} to {path!r}, but the model has no "
                                f"{'.'.join(parts[:i + 1])!r}: name an existing attribute")
        if i < len(parts) - 1:
            target = getattr(target, part)
    return target, parts[-1]
