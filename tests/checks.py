"""Assertions several engine tests share about a finished run."""

from __future__ import annotations

import poptrain
from poptrain.store import CheckpointStore


def assert_consistent_lineage(result: poptrain.Result, steps: int) -> None:
    """Every member done at `steps`, one report per step, and every copied source checkpoint verifies."""
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {steps}
    assert all(sorted(s) == list(range(1, steps + 1)) for s in result.frame().groupby("member").step.apply(list))
    files = CheckpointStore(result.spec["checkpoints"])
    assert result.events()
    for ev in result.events():
        sources = [c for c in result.store.checkpoints(result.name, ev.source) if c.step == ev.source_step]
        assert sources, ev
        for c in sources:
            files.load(c.key, c.checksum)  # raises CorruptCheckpoint if it does not match
