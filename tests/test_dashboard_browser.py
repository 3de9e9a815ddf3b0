"""The live dashboard in a real browser (Debian's Chromium, driven by Playwright) during a run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from playwright.sync_api import sync_playwright

from checks import answers, chromium, free_port
from conftest import ROOT

TESTS = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.slow

SPEC = """
name = "live"
trainable = "trainables:Quadratic"
paths = [{tests!r}]
metric = "score"
population = 4
steps = 3000
seed = 0
[space]
lr = {{type = "loguniform", low = 0.01, high = 0.3}}
[ready]
type = "every"
intervals = 5
"""


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_dashboard_draws_a_live_run_and_follows_it(tmp_path):
    spec = tmp_path / "live.toml"
    spec.write_text(SPEC.format(tests=TESTS))
    url = f"sqlite:///{tmp_path}/live.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS]),
           "POPTRAIN_TEST_SLEEP": "0.02"}
    run = subprocess.Popen([sys.executable, "-m", "poptrain", "run", str(spec), "--storage", url, "--workers", "2",
                            "--quiet"], env=env, start_new_session=True)
    port = free_port()
    dashboard = subprocess.Popen([sys.executable, "-m", "poptrain", "dashboard", "--storage", url, "--port", str(port)],
                                 env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: os.path.exists(tmp_path / "live.db") and answers(f"{base}/api/experiments/live"), 60,
                   "the run to start and the dashboard to answer")
        errors: list[str] = []
        with sync_playwright() as p:
            browser = chromium(p)
            page = browser.new_page(viewport={"width": 1200, "height": 2400})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/")
            assert "live" in page.inner_text("table")
            page.click("a:has-text('live')")
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=30000)
            for chart, title in (("scores", "Score of every member"), ("schedules", "Hyperparameter schedules"),
                                 ("tree", "Lineage tree")):
                assert title in page.inner_text(f"#chart-{chart}")
                assert page.locator(f"#chart-{chart} .scatterlayer .trace").count() > 0
            first = int(page.inner_text("#steps"))
            page.wait_for_function(f"() => parseInt(document.getElementById('steps').textContent) > {first}",
                                   timeout=30000)  # new steps arrive without a reload
            later = int(page.inner_text("#steps"))
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            browser.close()
        assert later > first and errors == []
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        for proc in (run, dashboard):
            os.killpg(proc.pid, 9)
            proc.wait(10)
