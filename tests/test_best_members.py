"""One definition of "the best members": the pure ranking, and every reader that shows it agreeing on one run."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

import poptrain
from checks import cli
from poptrain.records import best_members
from poptrain.report.dashboard import create_app
from poptrain.report.html import report_html
from trainables import Quadratic


def row(id: int, score: Any, status: str = "done") -> SimpleNamespace:
    return SimpleNamespace(id=id, last_score=score, status=status)


def ids(members: list[Any]) -> list[int]:
    return [m.id for m in members]


def test_best_first_by_mode_ties_by_lowest_id() -> None:
    rows = [row(3, 0.5), row(1, 0.9), row(2, 0.5), row(0, 0.1), row(4, np.float32(0.7)), row(5, 2)]
    assert ids(best_members(rows, "max")) == [5, 1, 4, 2, 3, 0]
    assert ids(best_members(rows, "min")) == [0, 2, 3, 4, 1, 5]
    assert ids(best_members(reversed(rows), "max")) == [5, 1, 4, 2, 3, 0]  # the order given never matters


def test_failed_members_and_scores_that_are_not_finite_are_left_out() -> None:
    rows = [row(0, 100.0, "failed"), row(1, None), row(2, math.nan), row(3, math.inf), row(4, -math.inf),
            row(5, "0.9"), row(6, True), row(7, 0.3, "active"), row(8, 0.2)]
    assert ids(best_members(rows, "max")) == [7, 8]
    assert ids(best_members(rows, "min")) == [8, 7]
    assert best_members([row(0, 1.0, "failed")], "max") == []


def test_a_score_function_ranks_by_another_value() -> None:
    rows = [row(0, 0.9), row(1, 0.1), row(2, 0.5, "failed")]
    size = {0: 10, 1: 3, 2: 1}
    assert ids(best_members(rows, "min", lambda m: size[m.id])) == [1, 0]


def test_an_unknown_mode_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="mode must be 'max' or 'min', not 'maximize'"):
        best_members([row(0, 1.0)], "maximize")


class PeaksThenFails(Quadratic):
    """The member with `bad` = 1 reports the top score, then raises on every later interval until it fails."""

    def train(self) -> None:
        if self.hparams["bad"] == 1 and self.trained >= 1:
            raise RuntimeError("failed after its best score")
        super().train()

    def evaluate(self) -> dict[str, float]:
        return {"score": 100.0} if self.hparams["bad"] == 1 else super().evaluate()


@pytest.fixture(scope="module")
def run_with_a_failed_leader(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('best')}/b.db"
    space = {"lr": poptrain.LogUniform(0.01, 0.5), "bad": poptrain.Choice([0, 1])}
    initial = [{"lr": 0.1, "bad": 1}, {"lr": 0.05, "bad": 0}, {"lr": 0.2, "bad": 0}, {"lr": 0.3, "bad": 0}]
    poptrain.Experiment(name="b", trainable=PeaksThenFails, space=space, metric="score", population=4, steps=6,
                        ready=poptrain.Every(3), storage=url, seed=3, initial=initial, max_failures=0,
                        exploit=None).run(engine="serial")
    return url


def test_the_cli_the_report_the_dashboard_and_result_agree(run_with_a_failed_leader: str) -> None:
    url = run_with_a_failed_leader
    result = poptrain.load(url, "b")
    leader = result.store.member("b", 0)
    others = [m for m in result.store.members("b") if m.id != 0]
    assert leader.status == "failed" and leader.last_score == 100.0  # it had the top score before failing
    assert all(m.status == "done" and m.last_score < 100.0 for m in others)
    expected = max(others, key=lambda m: m.last_score).id

    assert result.best().id == expected and ids(result.best_members())[0] == expected
    assert result.progress().best_member == expected
    code, out, err = cli("best", "--storage", url, "--experiment", "b")
    assert code == 0 and json.loads(out)["id"] == expected, err
    code, out, err = cli("status", "--storage", url, "--experiment", "b")
    assert code == 0 and f"(member {expected})" in out, err
    page = report_html(result)
    assert f"(member {expected})" in page
    best_table = re.search(r"<caption>best members by score \(max\)</caption>(.*?)</table>", page).group(1)
    first_cells = re.findall(r"<tr><td>(\d+)</td>", best_table)
    assert first_cells == [str(i) for i in ids(result.best_members())] and "0" not in first_cells
    status = TestClient(create_app(url)).get("/api/experiments/b").json()["status"]
    assert f"best {result.best().score:.4g}" in status
