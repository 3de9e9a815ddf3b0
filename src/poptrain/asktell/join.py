"""`connect`: join a stored population from a loop you own, as one process or as the ranks of a process group."""

from __future__ import annotations

from typing import Any

from ..store import open_store
from .group import GroupConnection, process_group
from .live import Connection


def connect(storage: str, name: str, worker_id: str | None = None, max_held: int | None = None,
            group: Any = None, trust_spec_code: bool = False) -> "Connection | GroupConnection":
    """Join a stored experiment from a loop you own: `ask` for a member, `tell` after each interval.

    The experiment must exist (`Experiment.create()`, or `poptrain create SPEC.toml`); the
    database is waited for if it is briefly unreachable, as a worker does. Once
    torch.distributed is initialised (or with `group`), the ranks of the group are one member:
    every rank calls connect, ask, tell and close alike and gets the same answers, and rank 0
    alone opens the store (see `GroupConnection`). Code the stored spec names beyond its
    trainable's module (a strategy of your own) is imported only with `trust_spec_code`, or
    POPTRAIN_TRUST_SPEC / POPTRAIN_TRUST_MODULES (see `poptrain.speccode`).
    """
    members_group = process_group(group)

    def open_connection() -> Connection:
        return Connection(open_store(storage, create=False, wait=True), name, worker_id, max_held=max_held,
                          trust_spec_code=trust_spec_code)

    if members_group is None:
        return open_connection()
    return GroupConnection(members_group, open_connection)
