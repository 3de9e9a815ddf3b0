"""Every figure of the one figure list draws on the dashboard, for a multi-objective and a one-metric run (Chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Page, sync_playwright
from starlette.testclient import TestClient

import poptrain
from checks import chromium, dashboard_server
from conftest import EXAMPLES
from poptrain.report.dashboard import create_app
from poptrain.report.figures import charts
from poptrain.report.html import report_html
from poptrain.experiment import load_spec
from trainables import Quadratic

PARETO = "noisy_quadratic_pareto"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store with a multi-objective run (the example, made small) and a one-metric run, both finished."""
    url = f"sqlite:///{tmp_path_factory.mktemp('figures')}/f.db"
    load_spec(Path(EXAMPLES) / f"{PARETO}.toml", storage=url, population=6, steps=8).run(engine="serial")
    poptrain.Experiment(name="single", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.5)}, metric="score",
                        population=4, steps=6, ready=poptrain.Every(3), storage=url, seed=2).run(engine="serial")
    return url


@pytest.fixture(scope="module")
def dashboard(two_runs: str) -> Iterator[str]:
    with dashboard_server(two_runs) as base:
        yield base


@pytest.fixture(scope="module")
def browser_page() -> Iterator[tuple[Page, list[str]]]:
    """One Chromium page for the module's tests (a browser costs seconds to start) and the problems it logs."""
    problems: list[str] = []
    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 2400})
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        yield page, problems
        browser.close()


@pytest.mark.parametrize("name", [PARETO, "single"])
def test_every_figure_of_the_list_draws_on_the_dashboard(two_runs: str, dashboard: str, name: str,
                                                         browser_page: tuple[Page, list[str]]) -> None:
    shown = [c.name for c in charts(poptrain.load(two_runs, name).objectives())]
    assert ("pareto" in shown) == (name == PARETO)
    page, problems = browser_page
    problems.clear()
    page.goto(f"{dashboard}/experiments/{name}")
    # the run is finished: the first refresh draws everything and sets the status line once
    page.wait_for_function("() => !['loading', 'waiting for the dashboard server']"
                           ".includes(document.getElementById('status').textContent)", timeout=30000)
    status = page.inner_text("#status")
    drawn = page.eval_on_selector_all("div.chart", "divs => divs.map(d => [d.dataset.figure, "
                                      "d.classList.contains('js-plotly-plot'), d.querySelectorAll('.trace').length])")
    assert "done" in status and "could not draw" not in status, status
    assert [figure for figure, _, _ in drawn] == shown  # the page's places are the list, in its order
    assert all(plotted and traces > 0 for _, plotted, traces in drawn), drawn
    assert problems == []


@pytest.mark.parametrize("name", [PARETO, "single"])
def test_the_report_and_the_dashboard_page_hold_the_same_places_for_figures(two_runs: str, name: str) -> None:
    shown = [c.name for c in charts(poptrain.load(two_runs, name).objectives())]
    places = r"<div class='chart' id='chart-(\w+)' data-figure='\1'"
    report = re.findall(places, report_html(poptrain.load(two_runs, name)))
    dashboard = re.findall(places, TestClient(create_app(two_runs)).get(f"/experiments/{name}").text)
    assert report == dashboard == shown


def test_the_report_of_two_experiments_draws_the_comparison_and_each_ones_tables(
        two_runs: str, tmp_path: Path, browser_page: tuple[Page, list[str]]) -> None:
    from poptrain.cli import main

    path = tmp_path / "both.html"
    assert main(["report", "--storage", two_runs, "--experiment", "single", "--experiment", PARETO, "-o", str(path)]) == 0
    page, problems = browser_page
    problems.clear()
    page.goto(path.as_uri())
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length == 2", timeout=30000)
    curves = page.locator("#chart-compare-scores .scatterlayer .trace").count()
    boxes = page.locator("#chart-compare-finals .boxlayer .trace").count()
    headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
    captions = page.eval_on_selector_all("caption", "cs => cs.map(c => c.textContent)")
    finals = page.inner_text("table >> nth=0")
    assert (curves, boxes) == (4, 2) and problems == []  # best and mean of each; every member's final score of each
    assert headings == ["single", PARETO] and captions.count("best members by score (max)") == 1
    assert "single" in finals and PARETO in finals and "24/24" in finals  # 4 members × 6 intervals
