"""What PBT did, as plain frames: lineage, the winning lineage, explore counts, diversity.

Pure functions of the records a store hands back (reports, events, the spec), so the same
numbers back the terminal, the HTML report and notebooks. Nothing here writes anything.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .policy import Policy, build_explore
from .policy.pareto import crowding, fronts, objective_matrix
from .space import Choice, LogUniform, parse_space
from .errors import SpecError
from .redact import without_password
from .store import Event, Report, default_checkpoints
from .store.base import EXPLOIT_AT_BARRIER


def ancestry(events: Sequence[Event], member: int) -> list[Event]:
    """The exploits that made a member's weights, oldest first.

    An asynchronous copy takes the source's checkpoint at step t, written after the source's own
    decision at t, so an exploit the source made at t is part of what was copied; a copy at a
    barrier (synchronous mode, the vectorized engine) takes the source as it was before any
    decision at t. Each event's `kind` says which.
    """
    by_member: dict[int, list[Event]] = {}
    for ev in events:
        by_member.setdefault(ev.member, []).append(ev)
    chain: list[Event] = []
    seen: set[int] = set()
    before: int | None = None
    same_step = True
    while True:
        earlier = [e for e in by_member.get(member, [])
                   if before is None or e.step < before or (same_step and e.step == before)]
        if not earlier or id(earlier[-1]) in seen:  # the guard matters only for a damaged store
            break
        ev = earlier[-1]
        seen.add(id(ev))
        chain.append(ev)
        member, before, same_step = ev.source, ev.source_step, ev.kind != EXPLOIT_AT_BARRIER
    return chain[::-1]


def segments(reports: Sequence[Report], events: Sequence[Event]) -> pd.DataFrame:
    """The lineage tree: each member's stretches of training between exploits.

    One row per segment: member, start (exclusive) and end step, the source it copied at its
    start (None for the initial one) and that source's step, and the hyperparameters it used.
    """
    last = Counter()
    for r in reports:
        last[r.member] = max(last[r.member], r.step)
    initial = {r.member: r.hparams for r in sorted(reports, key=lambda r: r.step, reverse=True)}
    rows = []
    for member in sorted(last):
        mine = sorted((e for e in events if e.member == member), key=lambda e: e.step)
        starts = [(0, None, None, initial.get(member, {}))] + [(e.step, e.source, e.source_step, e.new_hparams)
                                                               for e in mine]
        for i, (start, source, source_step, hparams) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else last[member]
            rows.append({"member": member, "start": start, "end": end, "source": source,
                         "source_step": source_step, "hparams": hparams})
    return pd.DataFrame(rows, columns=["member", "start", "end", "source", "source_step", "hparams"])


def winning_lineage(reports: Sequence[Report], events: Sequence[Event], member: int) -> pd.DataFrame:
    """One continuous learning curve and hyperparameter schedule for a member's weights.

    Walks back through the members whose weights it copied and stitches their reports into one
    history from step 0, one row per interval the weights were trained: `age` runs 1, 2, ... with
    no gap, `member` and `step` say who trained that interval and at which of its steps, and
    `copies` counts the copies the weights had gone through (it grows on the first interval after
    each). An asynchronous copy takes the source's checkpoint at `source_step`, so the age goes on
    from the source's history there, not from the copier's step: the curve ends at the run's last
    step when every copy was in step (synchronous runs), and is shorter (or longer) by the steps
    the copied checkpoints lagged (or led). An interval with no report has a NaN score. This is
    what training one model again on the found schedule would follow.
    """
    chain = ancestry(events, member)
    by_key = {(r.member, r.step): r for r in reports}
    final = max((r.step for r in reports if r.member == member), default=0)
    # (member, first step exclusive, last step inclusive, hparams it trained with) per stretch, oldest first
    root = chain[0].source if chain else member
    stretches: list[tuple[int, int, int, dict[str, Any] | None]] = [
        (root, 0, chain[0].source_step if chain else final, None)]
    for i, ev in enumerate(chain):
        end = chain[i + 1].source_step if i + 1 < len(chain) else final
        stretches.append((ev.member, ev.step, end, ev.new_hparams))
    rows: list[dict[str, Any]] = []
    for copies, (who, start, end, hparams) in enumerate(stretches):
        for step in range(start + 1, end + 1):
            r = by_key.get((who, step))
            if r is not None:
                hparams = r.hparams
            elif hparams is None:  # a missing first report of the root: its next one says what it trained with
                hparams = next((by_key[who, s].hparams for s in range(step, end + 1) if (who, s) in by_key), {})
            rows.append({"age": len(rows) + 1, "member": who, "step": step,
                         "score": r.score if r is not None else math.nan, "copies": copies, **hparams})
    return pd.DataFrame(rows, columns=None if rows else ["age", "member", "step", "score", "copies"])


def explore_counts(events: Sequence[Event], spec: dict[str, Any]) -> pd.DataFrame:
    """How often explore perturbed, resampled or otherwise changed each hyperparameter.

    Rebuilds each explore's generator from the run's seed, so the counts are exact, not guessed
    from the values.
    """
    space = parse_space(spec["space"])
    strategy = build_explore(spec["explore"], spec.get("paths") or ())
    policy = Policy(ready=None, exploit=None, explore=strategy, space=space, seed=int(spec["seed"]))
    counts: dict[str, Counter] = {name: Counter() for name in space}
    for ev in events:
        if not ev.source_hparams:
            continue
        rng = policy.explore_rng(ev.member, ev.step)
        for name, op in strategy.operations(ev.source_hparams, space, rng).items():
            counts[name][op] += 1
    frame = pd.DataFrame({name: dict(c) for name, c in counts.items()}).T.fillna(0).astype(int)
    frame.index.name = "hparam"
    frame.insert(0, "exploits", len([e for e in events if e.source_hparams]))
    return frame


def copies(events: Iterable[Event]) -> pd.DataFrame:
    """Who copied whom and how often: one row per (member, source) pair."""
    pairs = Counter((e.member, e.source) for e in events)
    rows = [{"member": m, "source": s, "copies": n} for (m, s), n in sorted(pairs.items())]
    return pd.DataFrame(rows, columns=["member", "source", "copies"])


def diversity(reports: Sequence[Report], spec: dict[str, Any]) -> pd.DataFrame:
    """How spread out the population's hyperparameters are at each step.

    `spread` is the standard deviation across members (of log10 values for log-uniform ones),
    `distinct` the number of different values.
    """
    space = parse_space(spec["space"])
    by_step: dict[int, list[Report]] = {}
    for r in reports:
        by_step.setdefault(r.step, []).append(r)
    rows = []
    for step in sorted(by_step):
        for name, domain in space.items():
            values = [r.hparams[name] for r in by_step[step] if name in r.hparams]
            if isinstance(domain, Choice):
                numeric = [float(domain.index(v)) for v in values]
            else:
                numeric = [math.log10(v) if isinstance(domain, LogUniform) else float(v) for v in values]
            rows.append({"step": step, "hparam": name, "spread": float(np.std(numeric)) if numeric else float("nan"),
                         "distinct": len({repr(v) for v in values})})
    return pd.DataFrame(rows, columns=["step", "hparam", "spread", "distinct"])


def stalled(reports: Sequence[Report], members: Sequence[Any], now: float, factor: float = 5.0,
            floor: float = 30.0) -> pd.DataFrame:
    """Leased members whose last report is much older than their usual interval: likely stuck.

    `usual` is the median time between a member's reports (the population's when it has fewer
    than two); a member is flagged when it is held by a live worker and `since` (seconds since
    its last report) exceeds both `factor` times that and `floor`.
    """
    times: dict[int, list[float]] = {}
    for r in reports:
        times.setdefault(r.member, []).append(r.time)
    gaps = {m: np.diff(sorted(ts)) for m, ts in times.items()}
    everyone = np.concatenate([g for g in gaps.values() if len(g)]) if any(len(g) for g in gaps.values()) else None
    rows = []
    for m in members:
        if m.status != "active" or not m.worker or m.lease_until < now or m.id not in times:
            continue
        usual = float(np.median(gaps[m.id])) if len(gaps[m.id]) else (
            float(np.median(everyone)) if everyone is not None else None)
        since = now - max(times[m.id])
        if usual is not None and since > max(factor * usual, floor):
            rows.append({"member": m.id, "since": since, "usual": usual, "worker": m.worker})
    return pd.DataFrame(rows, columns=["member", "since", "usual", "worker"])


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _no_default_checkpoints(storage: str, name: str) -> bool:
    try:
        default_checkpoints(storage, name)
    except SpecError:
        return True
    return False


def replay_spec(spec: dict[str, Any], curve: pd.DataFrame, root_seed: int, name: str) -> dict[str, Any]:
    """A spec that trains one member from scratch along a stitched lineage's schedule.

    It starts from the lineage's first member's seed and changes the hyperparameters at the ages
    where the lineage's changed: the PBT run's result without the population.
    """
    names = list(spec["space"])
    schedule: list[dict[str, Any]] = []
    for row in curve.to_dict("records"):
        hparams = {n: _plain(row[n]) for n in names}
        if not schedule or schedule[-1]["hparams"] != hparams:
            schedule.append({"step": int(row["age"]) - 1, "hparams": hparams})
    # its checkpoints go where its store's default puts them; a shared store has none, so it keeps the run's place
    keep = {"checkpoints"} if _no_default_checkpoints(spec["storage"], name) else set()
    replay = {k: v for k, v in spec.items() if k not in ({"checkpoints", "initial"} - keep)}
    replay["storage"] = without_password(spec["storage"])  # a spec is written to files: never with a password
    replay.update(name=name, population=1, steps=int(curve["age"].max()), exploit=None, member_seeds=[root_seed],
                  schedule=schedule)
    return replay


def final_metrics(reports: Sequence[Report], members: Sequence[Any]) -> dict[int, dict[str, Any]]:
    """Each member's latest metrics (failed members excluded)."""
    live = {m.id for m in members if m.status != "failed"}
    latest: dict[int, Report] = {}
    for r in reports:
        if r.member in live and (r.member not in latest or r.step >= latest[r.member].step):
            latest[r.member] = r
    return {m: dict(r.metrics) for m, r in latest.items()}


def pareto_front(reports: Sequence[Report], members: Sequence[Any], objectives: Sequence[tuple[str, str]],
                 hparams: dict[int, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Every live member's final objectives with its front (0: the Pareto front) and crowding, front 0 first."""
    metrics = final_metrics(reports, members)
    ids = sorted(metrics)
    objectives = tuple(objectives)
    values = objective_matrix(metrics, ids, objectives)
    front = fronts(values)
    crowd = crowding(values, front)
    rows = [{"member": m, **{name: metrics[m].get(name) for name, _ in objectives},
             "front": int(front[i]) if front[i] >= 0 else None, "crowding": float(crowd[i]),
             **(hparams or {}).get(m, {})} for i, m in enumerate(ids)]
    frame = pd.DataFrame(rows, columns=None if rows else ["member", *(n for n, _ in objectives), "front", "crowding"])
    if len(frame):
        frame = frame.sort_values(["front", "crowding", "member"], ascending=[True, False, True],
                                  na_position="last").reset_index(drop=True)
    return frame


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """The area two objectives ('higher is better' columns) dominate above `reference` (2-D, exact)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError("hypervolume is computed for two objectives")
    ref = np.asarray(reference, dtype=np.float64)
    keep = points[np.isfinite(points).all(axis=1) & (points > ref).all(axis=1)]
    if not len(keep):
        return 0.0
    keep = keep[np.argsort(-keep[:, 0], kind="stable")]
    area, best_y = 0.0, ref[1]
    for x, y in keep:  # sweep from the largest first objective down
        if y > best_y:
            area += (x - ref[0]) * (y - best_y)
            best_y = y
    return float(area)


def reports_frame(reports: Iterable[Report]) -> pd.DataFrame:
    """Reports as a frame: member, step, score, the metrics (`metric.` prefixed), the hyperparameters, time.

    Built a column at a time: a dict per report would take about a kilobyte each at the peak.
    """
    reports = list(reports)
    if not reports:
        return pd.DataFrame(columns=["member", "step", "score", "time"])
    columns: dict[str, Any] = {"member": np.fromiter((r.member for r in reports), np.int64, len(reports)),
                               "step": np.fromiter((r.step for r in reports), np.int64, len(reports)),
                               "score": np.array([r.score for r in reports], dtype=float)}
    for key in dict.fromkeys(k for r in reports for k in r.metrics):
        columns[f"metric.{key}"] = pd.Series([r.metrics.get(key, math.nan) for r in reports])
    for key in dict.fromkeys(k for r in reports for k in r.hparams):
        columns[key] = pd.Series([r.hparams.get(key, math.nan) for r in reports])
    columns["time"] = np.fromiter((r.time for r in reports), float, len(reports))
    return pd.DataFrame(columns)


def score_by_step(frame: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The population's best and mean score at each step, over the members that reported a score at it."""
    scored = frame[["step", "score"]].dropna()
    if not len(scored):
        return pd.DataFrame({"step": [], "best": [], "mean": [], "members": []})
    grouped = scored.groupby("step").score
    out = pd.DataFrame({"best": grouped.max() if mode == "max" else grouped.min(), "mean": grouped.mean(),
                        "members": grouped.count()})
    return out.reset_index()


def final_scores(members: Iterable[Any]) -> list[float]:
    """Each member's latest score (its final one once the run is done): members that failed or never scored left out."""
    return [float(m.last_score) for m in members
            if m.status != "failed" and m.last_score is not None and math.isfinite(m.last_score)]


def final_summary(finals: Sequence[float], mode: str) -> tuple[float | None, float | None, float | None]:
    """The best, mean and worst of final scores (None each when no member scored)."""
    if not finals:
        return None, None, None
    best, worst = (max(finals), min(finals)) if mode == "max" else (min(finals), max(finals))
    return best, float(np.mean(finals)), worst
