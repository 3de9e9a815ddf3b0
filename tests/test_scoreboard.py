"""The scoreboard a store keeps for decisions: applying changed rows equals reading every row again."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from poptrain.records import ACTIVE, DONE, FAILED
from poptrain.store.scoreboard import Scoreboard

rows = st.tuples(st.integers(0, 30), st.one_of(st.none(), st.floats(-5, 5)), st.sampled_from([ACTIVE, DONE, FAILED]),
                 st.integers(0, 3))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(rows, max_size=12, unique_by=lambda r: r[0]), max_size=8))
def test_applying_changes_equals_the_latest_row_of_every_member(batches):
    board, latest = Scoreboard(), {}
    for batch in batches:
        board.apply(batch)
        for row in batch:
            latest[row[0]] = row
        live = sorted((m, r[1]) for m, r in latest.items() if r[2] != FAILED and r[3] > 0)
        assert board.ids.tolist() == [m for m, _ in live]
        expected = [math.nan if s is None else s for _, s in live]
        assert np.array_equal(board.scores, np.array(expected, dtype=np.float64), equal_nan=True)
