"""The live dashboard in a real browser (Debian's Chromium, driven by Playwright) during a run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from playwright.sync_api import sync_playwright

import poptrain

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
    """While a run writes: the list, two experiments compared, the live page filtered (the filters in the address)
    and appended to without a reload, then a member's page and its lineage; no console error on the way."""
    spec = tmp_path / "live.toml"
    spec.write_text(SPEC.format(tests=TESTS))
    url = f"sqlite:///{tmp_path}/live.db"
    sys.path.insert(0, TESTS)
    from trainables import Quadratic

    poptrain.Experiment(name="done-before", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                        metric="score", population=3, steps=6, ready=poptrain.Every(3), storage=url,
                        seed=1).run(engine="serial", progress=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS]),
           "POPTRAIN_TEST_SLEEP": "0.02"}
    run = subprocess.Popen([sys.executable, "-m", "poptrain", "run", str(spec), "--storage", url, "--workers", "2",
                            "--quiet"], env=env, start_new_session=True)
    port = free_port()
    dashboard = subprocess.Popen([sys.executable, "-m", "poptrain", "dashboard", "--storage", url, "--port", str(port)],
                                 env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{base}/api/experiments/live"), 60, "the run to start and the dashboard to answer")
        errors: list[str] = []
        answered: list[tuple[str, str, int]] = []
        with sync_playwright() as p:
            browser = chromium(p)
            page = browser.new_page(viewport={"width": 1200, "height": 2400})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: answered.append((r.request.method, r.url.split("/api/")[-1], r.status))
                    if "/api/experiments/" in r.url else None)
            page.goto(f"{base}/")
            assert "live" in page.inner_text("table") and not page.is_visible("#compare")
            page.check("input.pick[value='live']")
            page.check("input.pick[value='done-before']")
            page.click("#compare")
            page.wait_for_url("**/compare?experiment=done-before&experiment=live")
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length == 2", timeout=30000)
            assert page.locator("#chart-compare-scores .scatterlayer .trace").count() == 4  # best and mean of each
            assert page.locator("#chart-compare-finals .boxlayer .trace").count() == 2
            assert "done-before" in page.inner_text("#summary") and "live" in page.inner_text("#summary")

            page.goto(f"{base}/experiments/live?status=active&member=1")  # a view kept in an address opens as it was
            page.wait_for_function("() => document.getElementById('shown').textContent.startsWith('showing 1 of 4')",
                                   timeout=30000)
            assert page.input_value("#filter-status") == "active" and page.input_value("#filter-member") == "1"
            length = "document.getElementById('chart-scores').data.find(t => t.name === 'member 1').x.length"
            first = page.evaluate(length)
            for chart, title in (("scores", "Score of every member"), ("schedules", "Hyperparameter schedules"),
                                 ("hparams", "Hyperparameters against score"), ("tree", "Lineage tree")):
                assert title in page.inner_text(f"#chart-{chart}")
                assert page.locator(f"#chart-{chart} .scatterlayer .trace").count() > 0
            page.fill("#filter-member", "1, 2")
            page.select_option("#filter-status", "")
            assert page.url.endswith("/experiments/live?member=1%2C+2")
            page.wait_for_function("() => document.getElementById('shown').textContent === 'showing 2 of 4 members'")
            page.fill("#filter-member", "1")
            page.wait_for_function("() => document.getElementById('shown').textContent === 'showing 1 of 4 members'")
            drawn = "document.getElementById('chart-scores').data.filter(t => t.visible !== false)"
            assert page.evaluate(f"{drawn}.map(t => t.name).filter(n => n.startsWith('member'))") == ["member 1"]
            # appended from the updates: it grows while the whole run was read once, at the page's load
            wholes = "performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/experiments/live'))"
            page.wait_for_function(f"() => {length} > {first} + 5 && {wholes}.length === 1", timeout=30000)
            assert ("POST", "experiments/live/updates", 200) in answered and {a[2] for a in answered} == {200}

            page.click("#members a:text-is('1')")
            page.wait_for_selector("h1:has-text('member 1')")
            assert "its lineage" in page.inner_text("body")
            if page.locator("a.member").count():  # it copied a member: that one's page is a click away
                source = page.inner_text("a.member >> nth=1")
                page.click("a.member >> nth=1")
                page.wait_for_selector(f"h1:has-text('member {source}')")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            browser.close()
        assert errors == []
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        for proc in (run, dashboard):
            os.killpg(proc.pid, 9)
            proc.wait(10)
