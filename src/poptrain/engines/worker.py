"""The PBT worker loop, written once and shared by every engine that runs processes.

A worker is a client of ask/tell (`poptrain.asktell`), the same path a user's own loop takes:
it asks for a member that is due, trains it one interval with the user's trainable, tells the
result, and executes the decision (copy a source's state and take new hyperparameters, or go
on). It keeps the trainables it trained alive between intervals, so a member that stays with it
is not reloaded from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import OrderedDict
from typing import Any, Callable

from ..asktell import Connection, GroupConnection, Member
from ..outcome import MemberError, user
from ..records import Exploit, Finished, Released
from ..store import Store, open_store
from ..trainable import Trainable, is_function_trainable, resolve_trainable

log = logging.getLogger("poptrain")

__all__ = ["Worker", "join"]


class Worker:
    """Asks for members that are due, trains each one interval, tells, and executes the decision.

    `max_held` caps how many members this worker keeps leased (the local engine gives each worker
    its share, so the population spreads evenly); `cache_size` caps the live trainables it keeps.
    With a process `group`, this process is one rank of a member that spans the group: every
    rank runs this loop, rank 0 alone with a store (the others pass None). An error in the
    member's code on any rank then ends this process, and with it the group: the engine charges
    the member one failure and starts a new group (a rank that raised alone cannot report it
    without leaving the others in a collective).
    """

    def __init__(self, store: Store | None, name: str, worker_id: str, *, trainable: type | None = None,
                 poll: float = 0.1, on_interval: Callable[[], None] | None = None,
                 max_held: int | None = None, cache_size: int | None = None, current: Any = None,
                 group: Any = None, trust_spec_code: bool = False) -> None:
        def connection() -> Connection:
            assert store is not None, "rank 0 of a group, or a process alone, holds the store"
            return Connection(store, name, worker_id, trainable=trainable, max_held=max_held, poll=poll,
                              trust_spec_code=trust_spec_code)

        self.group = group
        self.connection: Connection | GroupConnection = (
            connection() if group is None else GroupConnection(group, connection, trainable=trainable))
        self.store, self.name, self.id = store, name, worker_id
        self.exp = self.connection.spec
        self.trainable = resolve_trainable(trainable or self.exp.trainable, self.exp.paths)
        self.on_interval = on_interval
        self.cache_size = cache_size or max(8, 2 * (max_held or 0))
        self.cache: OrderedDict[int, tuple[Trainable, int, dict[str, Any]]] = OrderedDict()  # id -> live copy
        self.current = current  # a shared integer the local engine reads if this process dies

    def run(self) -> None:
        """Work until every member is done or failed."""
        self.connection.start()
        finished = False
        try:
            self._work()
            finished = True
        finally:
            # A group that ends on an error keeps its member leased: the engine charges it, then frees it.
            if finished or self.group is None:
                self.connection.close()

    def _work(self) -> None:
        """Ask, train and tell until no member is left."""
        while True:
            if is_function_trainable(self.trainable):  # the user's own loop trains the member it is handed
                member = self.connection.ask()
                if member is None:
                    return
                self.hand_over(member)
                continue
            member = self.connection.ask(live={m: version for m, (_, version, _) in self.cache.items()},
                                         decide=False)
            if member is None:
                return
            self.advance(member)

    def hand_over(self, member: Member) -> None:
        """Run a function trainable on one member until it leaves this process; its errors are its failures."""
        self._enter(member)
        try:
            user(self.trainable, member)
            if member.running:
                raise MemberError(f"trainable {self.exp.to_spec()['trainable']} returned before member {member.id} "
                                  f"reached its budget: loop while member.running")
        except MemberError as exc:
            self._failed(member, exc)
        self._leave()

    def advance(self, member: Member) -> None:
        """Train one leased member one interval and execute the decision; its code's errors are its failures."""
        self._enter(member)
        try:
            live = self._materialize(member)

            def apply(decision: Exploit) -> None:  # copy the source into the live trainable, then explore
                user(live.load_state_dict, decision.state)
                user(live.set_hparams, dict(decision.hparams or {}))

            if member.pending:  # its synchronous generation's decision, taken on the live trainable
                self.connection.decide(member, state=live.state_dict, apply=apply)
                self._remember(member, live)
            user(live.train)
            decision = self.connection.tell(member, user(live.evaluate), state=live.state_dict, apply=apply)
            if isinstance(decision, (Finished, Released)):  # it left this worker: its live copy goes too
                self.cache.pop(member.id, None)
                return
            self._remember(member, live)
            if self.on_interval:
                self.on_interval()
        except MemberError as exc:
            self.cache.pop(member.id, None)
            self._failed(member, exc)
        finally:
            self._trim_cache()
        self._leave()

    def _enter(self, member: Member) -> None:
        if self.current is not None:  # the engine charges this member if the process dies now
            self.current.value = member.id

    def _leave(self) -> None:
        if self.current is not None:
            self.current.value = -1

    def _failed(self, member: Member, error: MemberError) -> None:
        """Count the member's failure; in a group, end this process instead (the member stays charged to it)."""
        if self.group is not None:
            raise error
        self.connection.fail(member, str(error))

    def _materialize(self, member: Member) -> Trainable:
        """The member's live trainable: this worker's copy, or built from its state or from scratch."""
        cached = self.cache.get(member.id)
        if member.state is None and cached is not None and cached[1] == member.version:
            live, _, hparams = cached
            self.cache.move_to_end(member.id)
        else:
            live = user(self.trainable, dict(member.hparams), member.seed)
            hparams = dict(member.hparams)
            if member.state is not None:
                user(live.load_state_dict, member.state)
                user(live.set_hparams, dict(member.hparams))
        if hparams != member.hparams:  # a schedule's change, or hyperparameters a decision explored
            user(live.set_hparams, dict(member.hparams))
        self._remember(member, live)
        return live

    def _remember(self, member: Member, live: Trainable) -> None:
        self.cache[member.id] = (live, member.version, dict(member.hparams))
        self.cache.move_to_end(member.id)

    def _trim_cache(self) -> None:
        """Keep at most `cache_size` live trainables, dropping the least recently used idle ones."""
        for member in list(self.cache):
            if len(self.cache) <= self.cache_size:
                return
            if member not in self.connection.held:
                del self.cache[member]


def join(storage: str, name: str, worker_id: str | None = None, trust_spec_code: bool = False) -> None:
    """Join a running experiment as one more worker (as `poptrain worker` does on any host).

    Code its stored spec names beyond the trainable's module is imported only with `trust_spec_code`.
    """
    Worker(open_store(storage, create=False, wait=True), name, worker_id or f"{socket.gethostname()}-{os.getpid()}",
           trust_spec_code=trust_spec_code).run()
