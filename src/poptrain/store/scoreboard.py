"""The latest score of every live member, kept in columns and brought up to date from changed rows only."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..records import FAILED


class Scoreboard:
    """Ids (ascending) and latest scores (NaN where missing) of the members that are not failed and have reported.

    A store reads every row once, then only the rows stamped with a newer revision, so an
    exploit decision at 10,000 members costs the rows that changed since the previous one.
    """

    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.scores = np.zeros(0, dtype=np.float64)
        self.seen = -1  # rows stamped at or after this revision are read next time

    def apply(self, rows: Iterable[Any]) -> None:
        """Take changed rows (id, last_score, status, step), one per member, into the board."""
        rows = list(rows)
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        scores = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=len(rows))
        live = np.fromiter((r[2] != FAILED and r[3] > 0 for r in rows), dtype=bool, count=len(rows))
        at = np.searchsorted(self.ids, ids)
        known = at < len(self.ids)
        known[known] = self.ids[at[known]] == ids[known]
        update = known & live
        self.scores[at[update]] = scores[update]
        if np.all(known == live):  # nobody joined or left: the common case, done in place
            return
        keep = np.ones(len(self.ids), dtype=bool)
        keep[at[known & ~live]] = False
        joined = ~known & live
        ids_all = np.concatenate([self.ids[keep], ids[joined]])
        scores_all = np.concatenate([self.scores[keep], scores[joined]])
        order = np.argsort(ids_all, kind="stable")
        self.ids, self.scores = ids_all[order], scores_all[order]
