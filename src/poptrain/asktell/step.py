"""The per-interval step as one rule: what a told interval leads to, for one member or a whole batch."""

from __future__ import annotations

import time

from ..spec import ExperimentSpec
from ..records import Hparams
from ..store import Event
from ..store.base import EXPLOIT, EXPLOIT_AT_BARRIER

FINISH = "finish"  # the member reached its budget: checkpoint if needed, mark it done
TRAIN_ON = "train on"  # not ready: nothing to decide or save
SAVE = "save"  # ready, but nothing to decide (no exploit: random search): checkpoint, so the work is resumable
BARRIER = "barrier"  # ready in a synchronous run: checkpoint as pending and wait for the generation
DECIDE = "decide"  # ready: take the policy's decision (alone, or with the whole generation a batch holds)


def next_move(spec: ExperimentSpec, step: int, last_ready: int, holds_generation: bool = False) -> str:
    """What follows a report at `step` for a member last ready at `last_ready`.

    `holds_generation`: the caller holds every member at this step (a batched model), so a
    synchronous decision is taken at once, with no barrier to wait at.
    """
    if step >= spec.steps:
        return FINISH
    if not spec.policy.is_ready(step, last_ready):
        return TRAIN_ON
    if spec.exploit is None:
        return SAVE
    if spec.synchronous and not holds_generation:
        return BARRIER
    return DECIDE


def exploit_event(member: int, step: int, source: int, source_step: int, old: Hparams, new: Hparams,
                  source_hparams: Hparams, at_barrier: bool) -> Event:
    """The lineage edge an exploit records: `member` copied `source` (as at `source_step`) and explored to `new`."""
    return Event(member=member, step=step, source=source, source_step=source_step, old_hparams=old, new_hparams=new,
                 time=time.time(), source_hparams=source_hparams, kind=EXPLOIT_AT_BARRIER if at_barrier else EXPLOIT)
