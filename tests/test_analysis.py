"""Analysis of a run: lineage by hand, the stitched winning lineage, explore counts, diversity."""

from __future__ import annotations

import uuid
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import poptrain
from poptrain import analysis
from poptrain.policy import EXPLORE_RNG, build_explore, decision_rng
from poptrain.space import parse_space
from poptrain.store import Event, Report
from poptrain.store.base import EXPLOIT_AT_BARRIER
from trainables import Quadratic

LR = {0: 0.1, 1: 0.2, 2: 0.3}


def report(member: int, step: int, lr: float | None = None) -> Report:
    return Report(member=member, step=step, score=member * 10 + step, metrics={},
                  hparams={"lr": LR[member] if lr is None else lr}, time=float(step))


def hand_built() -> tuple[list[Report], list[Event]]:
    """Three members, six steps; 1 copies 0 at step 2, 2 copies 1 (one step behind) at step 4,
    and 1 copies 0 again at step 3, the very step 2 later copies it at."""
    events = [
        Event(member=1, step=2, source=0, source_step=2, old_hparams={"lr": 0.2}, new_hparams={"lr": 0.25}, time=2.5),
        Event(member=1, step=3, source=0, source_step=3, old_hparams={"lr": 0.25}, new_hparams={"lr": 0.27}, time=3.5),
        Event(member=2, step=4, source=1, source_step=3, old_hparams={"lr": 0.3}, new_hparams={"lr": 0.33}, time=4.5),
    ]
    lr = {(1, s): (0.25 if s == 3 else 0.27) for s in (3, 4, 5, 6)}
    lr.update({(2, s): 0.33 for s in (5, 6)})
    reports = [report(m, s, lr.get((m, s))) for m in range(3) for s in range(1, 7)]
    return reports, events


def test_winning_lineage_is_stitched_step_by_step_asynchronously():
    reports, events = hand_built()
    curve = analysis.winning_lineage(reports, events, member=2)
    # 2 copied 1's checkpoint at step 3, written after 1 copied 0 at step 3: the weights are
    # 0's up to its step 3, then 2's own from its step 5 on
    expected = pd.DataFrame({
        "age": [1, 2, 3, 4, 5],
        "member": [0, 0, 0, 2, 2],
        "step": [1, 2, 3, 5, 6],
        "score": [1.0, 2.0, 3.0, 25.0, 26.0],
        "copies": [0, 0, 0, 2, 2],  # 0's weights went to 1, then at once to 2
        "lr": [0.1, 0.1, 0.1, 0.33, 0.33],
    })
    pd.testing.assert_frame_equal(curve, expected, check_dtype=False)
    assert [e.step for e in analysis.ancestry(events, 2)] == [3, 4]


def test_winning_lineage_synchronously_copies_the_barrier_state():
    reports, events = hand_built()
    events = [replace(e, kind=EXPLOIT_AT_BARRIER) for e in events]
    curve = analysis.winning_lineage(reports, events, member=2)
    # at the barrier 1's step-3 state predates its decision at step 3: 0 (to 2), 1 (step 3), 2 (5, 6)
    assert curve[["member", "step"]].values.tolist() == [[0, 1], [0, 2], [1, 3], [2, 5], [2, 6]]
    assert curve.lr.tolist() == [0.1, 0.1, 0.25, 0.33, 0.33]
    assert curve.age.tolist() == [1, 2, 3, 4, 5]


def test_a_member_that_never_copied_is_its_own_lineage():
    reports, events = hand_built()
    curve = analysis.winning_lineage(reports, events, member=0)
    assert curve.member.tolist() == [0] * 6 and curve.step.tolist() == list(range(1, 7))


def test_segments_form_the_lineage_tree():
    reports, events = hand_built()
    tree = analysis.segments(reports, events)
    rows = tree[["member", "start", "end", "source", "source_step"]].astype(object).where(tree.notna(), None)
    assert rows.values.tolist() == [
        [0, 0, 6, None, None],
        [1, 0, 2, None, None], [1, 2, 3, 0, 2], [1, 3, 6, 0, 3],
        [2, 0, 4, None, None], [2, 4, 6, 1, 3],
    ]
    assert tree.hparams.tolist()[3] == {"lr": 0.27}


def test_copies_and_diversity():
    reports, events = hand_built()
    assert analysis.copies(events).values.tolist() == [[1, 0, 2], [2, 1, 1]]
    spec = {"space": {"lr": {"type": "loguniform", "low": 0.01, "high": 1.0}}}
    div = analysis.diversity(reports, spec).set_index("step")
    assert div.loc[1, "distinct"] == 3 and div.loc[6, "distinct"] == 3
    assert div.loc[1, "spread"] == pytest.approx(np.std(np.log10([0.1, 0.2, 0.3])))


def test_explore_counts_replay_the_run_exactly():
    exp = poptrain.Experiment(
        name="q", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.5), "b": poptrain.Uniform(0, 1)},
        metric="score", population=6, steps=18, ready=poptrain.Every(3), seed=3, storage=f"memory://{uuid.uuid4().hex}",
        explore=poptrain.Perturb(resample_probability=0.5))
    result = exp.run(engine="serial")
    events = result.events()
    assert events
    space, strategy = parse_space(result.spec["space"]), build_explore(result.spec["explore"])
    for ev in events:  # rebuilding the generator reproduces exactly what the run did
        rng = decision_rng(3, ev.member, ev.step, EXPLORE_RNG)
        assert strategy.explore(ev.source_hparams, space, rng) == ev.new_hparams
    counts = result.explore_counts()
    assert (counts.exploits == len(events)).all()
    assert (counts["perturb"] + counts["resample"] == len(events)).all()
    assert counts["resample"].sum() > 0 and counts["perturb"].sum() > 0


def test_report_is_one_offline_file_with_every_figure(tmp_path):
    from poptrain.cli import main

    url = f"sqlite:///{tmp_path}/r.db"
    exp = poptrain.Experiment(
        name="r", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.5), "b": poptrain.Uniform(0, 1)},
        metric="score", population=4, steps=9, ready=poptrain.Every(3), seed=1, storage=url)
    result = exp.run(engine="serial")
    assert main(["report", "--storage", url, "--experiment", "r", "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<script src=" not in page and "<link" not in page  # nothing fetched: plotly.js is inline
    assert page.count("data-figure=") == 5 and "Plotly.newPlot" in page
    for title in ("Score of every member", "The winning lineage", "Hyperparameter schedules",
                  "Hyperparameters against score", "Lineage tree"):
        assert title in page
    assert "best members by score" in page and f"{len(result.events())} exploits" in page
    schedules = result.plot_schedules()
    axes = {name: schedules.layout[f"yaxis{i + 1 if i else ''}"].type for i, name in enumerate(result.spec["space"])}
    assert axes == {"b": None, "lr": "log"}  # a log axis for the log-uniform hyperparameter only
    assert len(result.plot_lineage_tree().data) >= 4
