"""The winning lineage is one curve: a point per interval of the final weights' history, copies marked."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

import poptrain
from poptrain import analysis
from poptrain.store import Event, Report
from poptrain.report import winning_lineage_figure
from poptrain.store.base import EXPLOIT_AT_BARRIER
from trainables import Quadratic

STEPS = 12


def report(member: int, step: int, lr: float) -> Report:
    return Report(member=member, step=step, score=100.0 * member + step, metrics={}, hparams={"lr": lr}, time=step)


def event(member: int, step: int, source: int, source_step: int, lr: float) -> Event:
    return Event(member=member, step=step, source=source, source_step=source_step, old_hparams={},
                 new_hparams={"lr": lr}, time=float(step))


def hand_built() -> tuple[list[Report], list[Event]]:
    """Three members, twelve steps. Member 1 copies 0 in step (at 3); 2 copies 1 at its step 6 from
    1's step 4 (1 lagged two steps behind); 0 copies 2 at its step 7 from 2's step 9 (2 ran ahead)."""
    events = [event(1, 3, 0, 3, 0.2), event(2, 6, 1, 4, 0.3), event(0, 7, 2, 9, 0.4)]
    lr = {0: [0.1] * 7 + [0.4] * 5, 1: [0.1] * 3 + [0.2] * 9, 2: [0.5] * 6 + [0.3] * 6}
    return [report(m, s, lr[m][s - 1]) for m in range(3) for s in range(1, STEPS + 1)], events


def contiguous(curve: pd.DataFrame) -> None:
    assert curve.age.tolist() == list(range(1, len(curve) + 1))


def test_an_asynchronous_copy_goes_on_from_the_sources_step():
    reports, events = hand_built()
    curve = analysis.winning_lineage(reports, events, member=1)
    contiguous(curve)
    # 0's steps 1-3, then 1's own 4-12: a copy in step ends at the budget
    assert list(zip(curve.member, curve.step)) == [(0, s) for s in (1, 2, 3)] + [(1, s) for s in range(4, 13)]
    assert curve.age.iloc[-1] == STEPS and curve.copies.tolist() == [0] * 3 + [1] * 9
    curve = analysis.winning_lineage(reports, events, member=2)
    contiguous(curve)
    # 2 took 1's step-4 checkpoint at its step 6: its step 7 is the weights' 5th interval, and
    # the weights end 2 intervals short of the budget (1's steps 5-6 trained other weights)
    assert list(zip(curve.member, curve.step)) == ([(0, 1), (0, 2), (0, 3), (1, 4)] + [(2, s) for s in range(7, 13)])
    assert curve.age.iloc[-1] == STEPS - 2
    assert curve.copies.tolist() == [0, 0, 0, 1] + [2] * 6
    assert curve.lr.tolist() == [0.1, 0.1, 0.1, 0.2] + [0.3] * 6
    assert curve.score.tolist() == [1, 2, 3, 104] + [200.0 + s for s in range(7, 13)]


def test_a_copy_from_a_source_ahead_makes_weights_older_than_the_budget():
    reports, events = hand_built()
    curve = analysis.winning_lineage(reports, events, member=0)
    contiguous(curve)
    # 0 took 2's step-9 checkpoint (whose weights are 7 intervals old) at its step 7, then trained 8-12
    assert list(zip(curve.member, curve.step)) == (
        [(0, 1), (0, 2), (0, 3), (1, 4)] + [(2, s) for s in (7, 8, 9)] + [(0, s) for s in range(8, 13)])
    assert curve.age.iloc[-1] == STEPS  # 2 lagged 2 steps behind, then led 2 ahead
    assert curve.copies.diff().fillna(0).gt(0).sum() == 3


def test_an_interval_without_a_report_is_still_a_point():
    reports, events = hand_built()
    reports = [r for r in reports if (r.member, r.step) not in {(2, 7), (0, 12)}]
    curve = analysis.winning_lineage(reports, events, member=2)
    contiguous(curve)
    assert len(curve) == STEPS - 2 and curve.step.tolist()[4:] == list(range(7, 13))
    assert pd.isna(curve.score.iloc[4]) and curve.lr.iloc[4] == 0.3  # the copy's explored hyperparameters
    assert curve.copies.iloc[4] == 2


def test_copies_at_one_step_chain_at_a_barrier_and_asynchronously():
    reports = [report(m, s, 0.1) for m in range(3) for s in range(1, 7)]
    chain = [event(1, 3, 0, 3, 0.2), event(2, 3, 1, 3, 0.3)]
    asynchronous = analysis.winning_lineage(reports, chain, member=2)
    assert list(zip(asynchronous.member, asynchronous.step, asynchronous.copies)) == (
        [(0, s, 0) for s in (1, 2, 3)] + [(2, s, 2) for s in (4, 5, 6)])  # 1's step-3 checkpoint held 0's weights
    barrier = analysis.winning_lineage(reports, [Event(**{**e.__dict__, "kind": EXPLOIT_AT_BARRIER}) for e in chain], 2)
    assert list(zip(barrier.member, barrier.step, barrier.copies)) == (
        [(1, s, 0) for s in (1, 2, 3)] + [(2, s, 1) for s in (4, 5, 6)])  # before 1's own decision at 3


def test_the_figure_is_one_line_with_a_marker_at_each_copy():
    reports, events = hand_built()
    curve = analysis.winning_lineage(reports, events, member=2)
    fig = winning_lineage_figure(curve, "score")
    line, marks = fig.data
    assert list(line.x) == list(range(1, 11)) and list(line.y) == curve.score.tolist()
    assert list(marks.x) == [4, 5] and list(marks.y) == [104.0, 207.0]
    assert "member 2 took these weights at its step 6 from member 1 (its step 4)" in marks.text[1]
    assert "10 intervals in 12 steps" in fig.layout.title.text
    one = winning_lineage_figure(analysis.winning_lineage(reports, events, member=1), "score")
    assert "<sup>" not in one.layout.title.text and list(one.data[1].x) == [4]


def run(synchronous: bool, tmp: str) -> poptrain.Result:
    exp = poptrain.Experiment(
        name="q", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.5)}, metric="score", population=5,
        steps=STEPS, ready=poptrain.Every(2), seed=0, storage=f"sqlite:///{tmp}/{uuid.uuid4().hex}.db",
        synchronous=synchronous)
    return exp.run(engine="serial")


@pytest.mark.parametrize("synchronous", [True, False], ids=["synchronous", "asynchronous"])
def test_a_real_runs_lineage_is_every_interval_its_weights_trained(tmp_path, synchronous):
    result = run(synchronous, str(tmp_path))
    best = result.best()
    curve, chain = result.winning_lineage(), result.lineage(best.id)
    assert len(chain) > 0
    contiguous(curve)
    # Quadratic counts the intervals its state was trained through copies: one point for each
    assert len(curve) == best.load_state()["trained"]
    assert curve.step.iloc[-1] == STEPS and curve.member.iloc[-1] == best.id
    if synchronous:
        assert curve.step.tolist() == list(range(1, STEPS + 1))  # every step from the first to the budget, once
    else:  # this seed's best member copied a checkpoint one step behind: its weights trained one interval less
        assert (chain.step - chain.source_step).sum() == 1 and len(curve) == STEPS - 1
    frame = result.frame().set_index(["member", "step"])
    assert curve.score.tolist() == [frame.score[m, s] for m, s in zip(curve.member, curve.step)]
    # a copy marker on the first interval after each copy that the weights were trained after
    marked = curve[curve.copies.diff().fillna(curve.copies) > 0]
    assert curve.copies.iloc[-1] == len(chain)
    assert set(zip(marked.member, marked.step - 1)) <= set(zip(chain.member, chain.step))
    assert list(result.plot_winning_lineage().data[1].x) == marked.age.tolist()
