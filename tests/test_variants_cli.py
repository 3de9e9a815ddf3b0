"""The variants beyond the paper's policy (PB2, multi-objective, FIRE, neuroevolution) from TOML through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import poptrain
from test_cli import EXAMPLES, assert_user_error, cli, sqlite, toy_toml

NOISE = '[explore]\ntype = "noise"\nsigma = 0.1'


@pytest.mark.parametrize("engine", ["serial", "local"])
def test_pb2_runs_from_toml_and_the_cli(tmp_path: Path, engine: str) -> None:
    spec = toy_toml(tmp_path, {NOISE: '[explore]\ntype = "pb2"\ncandidates = 64', "steps = 200": "steps = 24"})
    url = sqlite(tmp_path / "pb2.db")
    code, out, err = cli("run", spec, "--storage", url, "--engine", engine, "--quiet")
    assert code == 0, err
    result = poptrain.load(url, "toy_quadratic")
    assert result.spec["explore"]["type"] == "pb2"
    events = result.events()
    assert events and all(0.0 <= e.new_hparams[k] <= 1.0 for e in events for k in ("h0", "h1"))
    # After the first decisions the GP has intervals to fit: explores leave the source's point.
    assert any(e.new_hparams != e.source_hparams for e in events)
    counts = result.explore_counts()
    assert (counts["gp-ucb"] == len(events)).all()
    code, _, err = cli("report", "--storage", url, "--experiment", "toy_quadratic", "-o", tmp_path / "r.html")
    assert code == 0, err


def test_pb2_runs_asynchronously_with_pending_points(tmp_path: Path) -> None:
    spec = toy_toml(tmp_path, {NOISE: '[explore]\ntype = "pb2"\ncandidates = 64', "steps = 200": "steps = 24",
                               "synchronous = true": "synchronous = false", "population = 2": "population = 4",
                               "initial = [{h0 = 1.0, h1 = 0.0}, {h0 = 0.0, h1 = 1.0}]": ""})
    url = sqlite(tmp_path / "async.db")
    # The serial engine takes the same asynchronous path, deterministically: on a loaded machine the local
    # engine's workers could start far enough apart that no member ever ranked in the bottom (a flaky failure).
    code, out, err = cli("run", spec, "--storage", url, "--engine", "serial", "--quiet")
    assert code == 0, err
    events = poptrain.load(url, "toy_quadratic").events()
    assert events and all(0.0 <= e.new_hparams[k] <= 1.0 for e in events for k in ("h0", "h1"))


def test_multi_objective_runs_from_toml_and_the_cli(tmp_path: Path) -> None:
    url = sqlite(tmp_path / "mo.db")
    spec = EXAMPLES / "noisy_quadratic_pareto.toml"
    code, out, err = cli("run", spec, "--storage", url, "--engine", "serial", "--steps", "12", "--population", "8")
    assert code == 0, err
    assert "Pareto front" in out and "--objective loss" in out
    result = poptrain.load(url, "noisy_quadratic_pareto")
    front = result.pareto_front()
    every = result.pareto_front(all_fronts=True)
    assert len(front) >= 1 and set(front.member) <= set(every.member) and len(every) == 8
    points = every[["loss", "width"]].to_numpy()
    for f in front.itertuples():  # nothing in the run dominates a member of the front
        assert not any((p[0] <= f.loss and p[1] <= f.width) and (p[0] < f.loss or p[1] < f.width) for p in points)
    assert result.events(), "the run copied nothing: the exploit was not exercised"
    # best() needs an objective: one error line on the CLI, the member with the lowest loss with one.
    code, out, err = cli("best", "--storage", url, "--experiment", "noisy_quadratic_pareto")
    assert_user_error(code, out, err, "several objectives (loss (min), width (min))", "--objective")
    code, out, err = cli("best", "--storage", url, "--experiment", "noisy_quadratic_pareto", "--objective", "loss")
    assert code == 0 and json.loads(out)["id"] == int(every.loc[every.loss.idxmin(), "member"])
    assert_user_error(*cli("best", "--storage", url, "--experiment", "noisy_quadratic_pareto", "--objective", "size"),
                      "no objective 'size'")
    # the report draws the front
    code, _, err = cli("report", "--storage", url, "--experiment", "noisy_quadratic_pareto", "-o", tmp_path / "r.html")
    assert code == 0, err
    assert "figure-pareto" in (tmp_path / "r.html").read_text() and "Final Pareto front" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("engine", ["serial", "local"])
def test_fire_runs_from_toml_and_the_cli(tmp_path: Path, engine: str) -> None:
    url = sqlite(tmp_path / "fire.db")
    spec = EXAMPLES / "noisy_quadratic_fire.toml"
    code, out, err = cli("run", spec, "--storage", url, "--engine", engine, "--steps", "16", "--quiet")
    assert code == 0, err
    result = poptrain.load(url, "noisy_quadratic_fire")
    assert result.spec["exploit"] == {"type": "fire", "subpopulations": 2, "evaluators": 1, "fraction": 0.25,
                                      "history": 8, "settle": 1}
    events = result.events()
    assert events, "no member copied: the strategy was not exercised"
    # copies stay in their sub-population, but for the evaluator's (member 7) weights flowing down into sub-population 0;
    # the evaluator takes a schedule of sub-population 0 as it is
    assert all(e.source % 2 == e.member % 2 or (e.source == 7 and e.member % 2 == 0) for e in events)
    reported = {(r.member, r.step): r.hparams for r in result.store.reports(result.name)}
    evaluated = [e for e in events if e.member == 7]
    assert evaluated and all(any(reported.get((m, e.step)) == e.new_hparams for m in range(0, 8, 2)) for e in evaluated)
