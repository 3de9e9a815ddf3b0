"""A member that spans a process group: its ranks call ask/tell alike, rank 0 alone talks to the store.

Under torchrun, DDP, FSDP or a Trainer with several devices, the ranks of one
`torch.distributed` group train one model, so they are one member. `GroupConnection` gives
every rank the same answers: rank 0 holds a `Connection` (the lease, the store, the
checkpoints) and, after each call, broadcasts what it returned (and the member as it now is)
through the group's own collectives; the other ranks wait for that broadcast and return it.

The state callables a call may need run on every rank at the same moment, so a collective
inside them (FSDP's gather of a full state dict) works: when rank 0's connection calls one, it
first tells the others to call theirs, and rank 0's value is the one saved. An exploit's
`apply` runs on every rank with the same decision, copied state included. An error on rank 0
(a lost store, a refused call) is broadcast and raised on every rank, so no rank is left in a
collective the others skipped. While rank 0 waits for a member to become due it broadcasts a
keep-alive every second, so the other ranks' waits stay within the group's timeout.

An interval that is not ready (nothing to decide or save) waits for no other rank: every rank
starts an all-gather of its score (and of rank 0's word that it has nothing to deliver) without
waiting for it and returns Continue; the gather completes while the ranks train on, and at the
group's next call every rank reads it first: rank 0 then writes that interval's report (with the
score `reduce` asked for), and every rank learns the score (`member.record.last_score` is None
until then). A result that is not a score, on any rank `reduce` counts, is raised on every rank
at that next call (a `tell`; `ask`, `fail`, `release` and `close` log it). Should the report's
write find the lease lost (or the store gone), rank 0 says so in the following gather, and every
rank gets the outcome at the call after: one interval later than a single process would.
"""

from __future__ import annotations

import math
import pickle
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from ..errors import PoptrainError
from ..outcome import MemberError, score_of, user
from ..records import Continue, Decision, Exploit
from ..store import MemberRecord
from ..spec import ExperimentSpec
from ..wire import dumps
from .live import REDUCTIONS, Connection, Member, check_reduce, log
from .step import TRAIN_ON, next_move

_KEEP_ALIVE = 1.0  # seconds between rank 0's broadcasts while it waits for a member
_BUFFER = 4096  # bytes of a message's first broadcast: a decision and the member's fields fit
_SYNCED = ("step", "steps", "hparams", "running", "pending", "record")  # what a call may change on a Member


def process_group(group: Any = None) -> Any:
    """The group whose ranks form one member: `group`, or torch.distributed's default group once initialised; None
    for a single process (no group, or a group of one)."""
    dist = sys.modules.get("torch.distributed")  # never import torch for a process that has not
    if dist is None or not dist.is_available() or not dist.is_initialized():
        if group is not None:
            raise PoptrainError("connect(group=...) names a process group, but torch.distributed is not "
                                "initialised in this process: call torch.distributed.init_process_group first")
        return None
    group = group if group is not None else dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


class GroupConnection:
    """The ranks of one process group as one member: every rank calls what rank 0's `Connection` does, in the
    same order, and gets the same result."""

    def __init__(self, group: Any, open_connection: Callable[[], Connection], trainable: Any = None) -> None:
        import torch
        import torch.distributed as dist

        self._torch, self.dist, self.group = torch, dist, group
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        self._device = _collective_device(dist, group)
        self.inner: Connection | None = None
        self._states: dict[int, Any] = {}  # member -> this rank's state callable, as last told
        self._apply: Callable[[Exploit], None] | None = None
        self._sent_state: Any = None  # the copied state an apply message already carried
        self._alive_at = 0.0  # when rank 0 last told the others it is still waiting for a member
        self._pending: tuple[int, Any] | None = None  # rank 0: (member, Released or error) a quick tell's write met
        self._gathering: _Gathering | None = None  # a quick tell's all-gather, read at the group's next call
        self._unreported: tuple[Member, Any, Any] | None = None  # rank 0: a read quick tell's report, to write
        self._clear = True  # every rank: rank 0's word, in the last gather read, that it has nothing to deliver
        if self.rank == 0:
            spec = self._lead(lambda: self._open(open_connection))
        else:
            spec = self._follow()
        self.spec = ExperimentSpec.from_spec(spec, trainable=trainable)
        self.policy = self.spec.policy
        self.held: set[int] = set(self.inner.held) if self.inner is not None else set()
        self.id = self.inner.id if self.inner is not None else None

    def _open(self, open_connection: Callable[[], Connection]) -> dict[str, Any]:
        self.inner = open_connection()
        return self.inner.store.get_spec(self.inner.name)

    @property
    def store(self) -> Any:
        """Rank 0's store (None on the other ranks: they never touch it)."""
        return None if self.inner is None else self.inner.store

    @property
    def name(self) -> str:
        return self.spec.name

    # the calls: each runs on rank 0 and is broadcast
    def __enter__(self) -> "GroupConnection":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._call(lambda c: c.start())

    def close(self) -> None:
        """Give back what rank 0 holds; every rank returns once all have seen it (a rank that left early would
        close its end of the group under one still receiving)."""
        self._settle(raise_errors=False)
        if self._pending is not None and isinstance(self._pending[1], BaseException):
            log.warning("closing after a report rank 0 could not store: %s", self._pending[1])
        self._pending = None
        self._call(lambda c: c.close())
        self.dist.barrier(group=self.group)

    def ask(self, wait: bool = True, live: Mapping[int, int] | None = None, decide: bool = True) -> Member | None:
        """As `Connection.ask`, on every rank; the member (and its state to load) is rank 0's."""
        self._settle(raise_errors=False)
        return self._call(lambda c: c.ask(wait, live, decide, on_wait=self._keep_alive))

    def tell(self, member: Member, result: Any, state: Any = None, apply: Callable[[Exploit], None] | None = None,
             reduce: str | None = None) -> Decision:
        """As `Connection.tell`, on every rank: the score is rank 0's, or `reduce` ("mean", "min", "max") of every
        rank's; `state` callables run on every rank and rank 0's value is saved; `apply` runs on every rank."""
        check_reduce(reduce)
        self._settle(write=False)
        if callable(state):
            self._states[member.id] = state
        if self._clear and next_move(self.spec, member.step + 1, member.record.last_ready) == TRAIN_ON:
            self._write_report()
            return self._train_on(member, result, state, reduce)
        if reduce is not None:  # rank 0 writes the last quick tell's report while this gather is on its way
            result = self._reduced(result, reduce, meanwhile=self._write_report)
        self._write_report()
        return self._call(lambda c: c.tell(member, result, self._collective(member.id, state), self._applier(apply)),
                          member, apply, deliver=True)

    def decide(self, member: Member, state: Any = None, apply: Callable[[Exploit], None] | None = None) -> Decision:
        self._settle()
        if callable(state):
            self._states[member.id] = state
        return self._call(lambda c: c.decide(member, self._collective(member.id, state), self._applier(apply)),
                          member, apply, deliver=True)

    def fail(self, member: Member, error: str) -> str:
        self._settle(raise_errors=False)
        return self._call(lambda c: c.fail(member, error), member)

    def release(self, member: Member) -> None:
        self._settle(raise_errors=False)
        self._call(lambda c: c.release(member), member)

    # the protocol
    def _call(self, run: Callable[[Connection], Any], member: Member | None = None,
              apply: Callable[[Exploit], None] | None = None, deliver: bool = False) -> Any:
        if self.rank == 0:
            assert self.inner is not None
            run = self._delivering(run, member, deliver)
            result = self._lead(lambda: run(self.inner), member)
        else:
            self._apply = apply
            try:
                result = self._follow(member)
            finally:
                self._apply = None
        self._clear = True  # rank 0 delivered whatever it held in this call (its pending outcome is gone)
        if isinstance(result, Member):
            result.connection = self  # type: ignore[assignment]
        return result

    def _train_on(self, member: Member, result: Any, state: Any, reduce: str | None) -> Decision:
        """A quick tell: every rank starts the all-gather of its score, moves the member on and trains on; the
        gather is read (and rank 0 stores the report) at the group's next call."""
        mine, error = self._row(result, reduce)
        gathered = [self._torch.empty_like(mine) for _ in range(self.size)]
        work = self.dist.all_gather(gathered, mine, group=self.group, async_op=True)
        self._gathering = _Gathering(work, gathered, mine, error, member, member.record, result, state, reduce)
        member.advance(None)  # its score is known once the gather is read
        return Continue()

    def _settle(self, raise_errors: bool = True, write: bool = True) -> None:
        """Read the last quick tell's gather (it completed while the ranks trained): its score on every rank, its
        report on rank 0 (written now, or by `_write_report` when not `write`), and whether rank 0 has an outcome
        to deliver. Every rank reads the same rows, so every rank raises (or logs) alike."""
        gathering, self._gathering = self._gathering, None
        if gathering is None:
            return
        gathering.work.wait()
        rows = self._torch.stack(gathering.gathered).cpu().tolist()
        self._clear = bool(rows[0][2])
        try:
            value = self._combine(rows, gathering.reduce, gathering.error)
        except MemberError as exc:
            if raise_errors:
                raise
            log.warning("member %d: the last interval told was not stored: %s", gathering.member.id, exc)
            return
        member, told = gathering.member, gathering.told
        if member.record.step == told.step + 1:  # (always, unless the caller moved the member on itself)
            member.record = replace(member.record, last_score=_score_or_none(value))
        if self.rank != 0:
            return
        result = gathering.result
        if gathering.reduce is not None:
            result = {**result, self.spec.metric: value} if isinstance(result, dict) else value
        self._unreported = (replace(member, record=told), result, gathering.state)  # lands at its own step
        if write:
            self._write_report()

    def _write_report(self) -> None:
        """Rank 0: store the report a read gather left; what the write meets is delivered at a later call."""
        unreported, self._unreported = self._unreported, None
        if unreported is None or self._pending is not None:  # a member already lost stores nothing more
            return
        assert self.inner is not None
        view, result, state = unreported
        try:
            outcome: Any = self.inner.tell(view, result, self._collective(view.id, state))
        except Exception as exc:  # noqa: BLE001 - a store gone for good: every rank raises it at a later call
            outcome = exc
        if not isinstance(outcome, Continue):
            self._pending = (view.id, outcome)

    def _delivering(self, run: Callable[[Connection], Any], member: Member | None,
                    deliver: bool) -> Callable[[Connection], Any]:
        """`run`, or instead what a quick tell's write met: its error, or (to a tell) the member's release."""
        if self._pending is None:
            return run
        pending, self._pending = self._pending, None
        lost_member, outcome = pending

        def raise_it(_: Connection) -> Any:
            raise outcome

        def release(_: Connection) -> Any:
            assert member is not None
            member.running = False
            return outcome

        if isinstance(outcome, BaseException):
            return raise_it
        if deliver and member is not None and member.id == lost_member:
            return release
        return run  # a lost member that this call is not about: it already left rank 0's connection

    def _lead(self, run: Callable[[], Any], member: Member | None = None) -> Any:
        """Run the call on rank 0, then send its outcome (value and the member as it now is) to every rank."""
        self._sent_state = None
        try:
            result = run()
        except BaseException as exc:
            self._send(("raise", _portable(exc)))
            raise
        self.held = set(self.inner.held) if self.inner is not None else set()
        sent = result
        if isinstance(result, Member):
            sent = replace(result, connection=None)
        elif isinstance(result, Exploit) and self._sent_state is not None and result.state is self._sent_state:
            sent = replace(result, state=_SENT)  # the apply message carried it already
        synced = None if member is None else {k: getattr(member, k) for k in _SYNCED}
        self._send(("return", sent, synced, sorted(self.held)))
        return result

    def _follow(self, member: Member | None = None) -> Any:
        """On the other ranks: do what rank 0 asks (call a state, apply a decision) until it sends the outcome."""
        applied: Exploit | None = None
        error: BaseException | None = None
        while True:
            message = self._receive()
            kind = message[0]
            if kind == "state":  # rank 0 saves its state now: ours is called alongside (collectives inside work)
                told = self._states.get(message[1])
                if callable(told) and error is None:
                    try:
                        user(told)
                    except BaseException as exc:  # raised after the call, so no collective is left waiting
                        error = exc
            elif kind == "apply":
                applied = message[1]
                if self._apply is not None and error is None:
                    try:
                        self._apply(applied)
                    except BaseException as exc:
                        error = exc
            elif kind == "raise":
                raise message[1]
            elif kind == "return":
                _, result, synced, held = message
                if error is not None:
                    raise error
                if isinstance(result, Exploit) and result.state is _SENT and applied is not None:
                    result = replace(result, state=applied.state)
                if member is not None and synced is not None:
                    for key, value in synced.items():
                        setattr(member, key, value)
                self.held = set(held)
                return result
            # "wait": rank 0 is still waiting for a member to become due

    def _collective(self, member: int, state: Any) -> Any:
        """Rank 0's state, called only after the other ranks are told to call theirs."""
        if not callable(state):
            return state

        def call() -> Any:
            self._send(("state", member))
            return state()

        return call

    def _applier(self, apply: Callable[[Exploit], None] | None) -> Callable[[Exploit], None] | None:
        """Rank 0's `apply`, run after the decision (with its copied state) is sent to the other ranks."""
        if apply is None:
            return None

        def run(decision: Exploit) -> None:
            self._send(("apply", decision))
            self._sent_state = decision.state
            apply(decision)

        return run

    def _keep_alive(self) -> None:
        """While rank 0 waits for a member, tell the others now and then, so their wait never times out."""
        now = time.monotonic()
        if now - self._alive_at >= _KEEP_ALIVE:
            self._alive_at = now
            self._send(("wait",))

    def _row(self, result: Any, reduce: str | None) -> tuple[Any, MemberError | None]:
        """This rank's part of a gather: its score (NaN if none), whether it is not a score, and (from rank 0)
        whether it has nothing to deliver; with the error, if its result is not a score. Without `reduce` only
        rank 0's result counts."""
        score: Any = math.nan
        error: MemberError | None = None
        if reduce is not None or self.rank == 0:
            try:
                score, _ = user(score_of, result, self.spec.metric)
            except MemberError as exc:
                error = exc
        clear = self.rank == 0 and self._pending is None
        row = self._torch.tensor([math.nan if score is None else score, error is not None, clear],
                                 dtype=self._torch.float64, device=self._device)
        return row, error

    def _combine(self, rows: list[list[float]], reduce: str | None, error: MemberError | None) -> float:
        """The score the gathered rows tell (`reduce` of every rank's, else rank 0's); MemberError on every rank
        when a rank that counts told a result that is not a score (its own error on that rank)."""
        counted = rows if reduce is not None else rows[:1]
        failed = [rank for rank, row in enumerate(counted) if row[1]]
        if error is not None:
            raise error
        if failed:
            raise MemberError(f"rank {failed[0]} of this member's group told a result that is not a score "
                              f"(that rank raised why)")
        values = [row[0] for row in counted]
        if reduce is None:
            return values[0]
        return REDUCTIONS[reduce](values) if all(math.isfinite(v) for v in values) else math.nan

    def _reduced(self, result: Any, reduce: str, meanwhile: Callable[[], None]) -> Any:
        """The result with its score reduced across the ranks, in one all-gather that every rank takes part in (a
        rank whose result is not a score too: then every rank raises); `meanwhile` runs while it is on its way."""
        mine, error = self._row(result, reduce)
        gathered = [self._torch.empty_like(mine) for _ in range(self.size)]
        work = self.dist.all_gather(gathered, mine, group=self.group, async_op=True)
        meanwhile()
        work.wait()
        value = self._combine(self._torch.stack(gathered).cpu().tolist(), reduce, error)
        return {**result, self.spec.metric: value} if isinstance(result, dict) else value

    # One broadcast per message: a fixed buffer holds the length and most messages whole; a longer one
    # (a state to load) sends its remainder in a second broadcast.
    def _send(self, message: tuple[Any, ...]) -> None:
        import torch

        data = dumps(message)  # a copied state's tensors as numpy arrays: one copy of their bytes
        head = torch.zeros(_BUFFER, dtype=torch.uint8)
        first = data[:_BUFFER - 8]
        head[:8] = torch.frombuffer(bytearray(len(data).to_bytes(8, "little")), dtype=torch.uint8)
        head[8:8 + len(first)] = torch.frombuffer(bytearray(first), dtype=torch.uint8)
        self.dist.broadcast(head.to(self._device), group=self.group, group_src=0)
        if len(data) > len(first):
            rest = torch.frombuffer(bytearray(data[len(first):]), dtype=torch.uint8).to(self._device)
            self.dist.broadcast(rest, group=self.group, group_src=0)

    def _receive(self) -> tuple[Any, ...]:
        import torch

        head = torch.empty(_BUFFER, dtype=torch.uint8, device=self._device)
        self.dist.broadcast(head, group=self.group, group_src=0)
        head = head.cpu()
        size = int.from_bytes(bytes(head[:8].tolist()), "little")
        data = head[8:8 + min(size, _BUFFER - 8)].numpy().tobytes()
        if size > len(data):
            rest = torch.empty(size - len(data), dtype=torch.uint8, device=self._device)
            self.dist.broadcast(rest, group=self.group, group_src=0)
            data += rest.cpu().numpy().tobytes()
        return pickle.loads(data)  # rank 0 of this member's own job sent it, as broadcast_object_list would


@dataclass
class _Gathering:
    """A quick tell's all-gather in flight, with what reading it needs."""

    work: Any
    gathered: list[Any]
    mine: Any  # this rank's row: kept alive until the gather completes
    error: MemberError | None  # this rank's own, if its result was not a score
    member: Member
    told: MemberRecord  # the member's record as told (before the quick tell moved it on)
    result: Any
    state: Any
    reduce: str | None


def _score_or_none(value: float) -> float | None:
    """A gathered score as a record holds it: NaN (no score) as None."""
    return None if math.isnan(value) else value


class _Sent:
    """Stands for a copied state the ranks already received with the decision's apply message."""

    def __reduce__(self) -> str:
        return "_SENT"


_SENT = _Sent()


def _collective_device(dist: Any, group: Any) -> Any:
    """Where the group's collectives take their tensors: this rank's GPU under NCCL, else the CPU."""
    import torch

    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _portable(exc: BaseException) -> BaseException:
    """The error as the other ranks can receive it: itself if it pickles, else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - an exception that does not pickle still ends every rank's call
        return PoptrainError(f"rank 0 of this member's group raised {type(exc).__name__}: {exc}")
