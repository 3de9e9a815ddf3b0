"""A long run's figures draw a thinned read (and say so); the winning lineage and the tables keep every interval."""

from __future__ import annotations

from pathlib import Path

import poptrain
from poptrain.report import figures

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_over_the_point_budget_draws_one_interval_in_n_and_says_so(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/long.db"
    poptrain.Experiment(name="long", trainable="drift_population:DriftPopulation", paths=[str(ROOT / "benchmarks")],
                        metric="score", mode="max", population=6, steps=20, ready=poptrain.Every(5),
                        space={"target": poptrain.Uniform(0.0, 2.0)}, storage=url, seed=0).run(engine="vectorized")
    result = poptrain.load(url, "long")
    whole = figures.run_data(result)
    assert whole.every == 1 and len(whole.frame) == 120
    monkeypatch.setattr(figures, "POINTS", 40)
    data = figures.run_data(result)
    assert data.every == 3
    for member, rows in data.frame.groupby("member"):
        assert sorted(rows.step) == [1, 3, 6, 9, 12, 15, 18, 20]  # multiples of 3, the first and the newest step
    assert data.curve.equals(whole.curve) and data.tree.equals(whole.tree)  # every interval, as unthinned
    drawn = figures.draw(data)
    assert "one interval in 3 of each member drawn" in drawn["scores"].layout.title.text
    assert "one interval in 3" in drawn["schedules"].layout.title.text
    assert "one interval in" not in figures.draw(whole)["scores"].layout.title.text
    markers = next(t for t in drawn["scores"].data if t.name == "exploit")
    assert result.events() and len(markers.y) == len(result.events())
    thinned = {(m, s): v for m, s, v in zip(data.frame.member, data.frame.step, data.frame.score)}
    for event, y in zip(result.events(), markers.y):  # at the member's latest drawn step up to the exploit's
        latest = max(s for m, s in thinned if m == event.member and s <= event.step)
        assert y == thinned[event.member, latest]
