"""The dashboard and the report of an experiment full of payloads, in a real browser (Debian's Chromium).

No payload may run (the `window.__pwned` flag stays unset, no dialog opens, no CSP violation is
logged) and every name, Choice value and failure message shows literally.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from checks import chromium, dashboard_server
from payloads import CHOICE_NAME, FAILURE, HPARAM, IMG, METRIC, SCRIPT, payload_experiment
from poptrain.cli import main

pytestmark = pytest.mark.slow


def watch(page: Page, problems: list[str]) -> None:
    """Record every dialog, console error (CSP violations are logged as errors) and page error."""
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))


def assert_nothing_ran(page: Page, problems: list[str]) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src=x]").count() == 0 and page.locator("svg[onload]").count() == 0
    assert problems == []


@pytest.fixture(scope="module")
def payload_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("payload")
    url = f"sqlite:///{folder}/p.db"
    payload_experiment(url)
    return url, folder


def test_the_dashboard_runs_no_payload_and_shows_it_literally(payload_store: tuple[str, Path]) -> None:
    url, _ = payload_store
    with dashboard_server(url) as base:
        problems: list[str] = []
        with sync_playwright() as p:
            browser = chromium(p)
            page = browser.new_page(viewport={"width": 1200, "height": 2400})
            watch(page, problems)
            page.goto(f"{base}/")
            page.click("a:has-text('payload')")
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=30000)
            # the members table is replaced by the JSON-fed one once the first refresh lands
            page.wait_for_function("() => document.getElementById('status').textContent !== 'loading'", timeout=30000)
            members = page.inner_text("#members")
            assert f"{HPARAM}=" in members and f"{CHOICE_NAME}={IMG}" in members and f"{CHOICE_NAME}={SCRIPT}" in members
            assert FAILURE in members
            assert METRIC in page.text_content("#chart-scores") and METRIC in page.text_content("#chart-lineage")
            schedules = page.text_content("#chart-schedules")
            assert HPARAM in schedules and CHOICE_NAME in schedules and IMG in schedules and SCRIPT in schedules
            assert_nothing_ran(page, problems)
            page.click("#members a:has-text('0')")
            page.wait_for_selector("h1:has-text('member 0')")
            member = page.inner_text("body")
            assert HPARAM in member and CHOICE_NAME in member and IMG in member
            assert_nothing_ran(page, problems)
            browser.close()


def test_the_report_runs_no_payload_and_shows_it_literally(payload_store: tuple[str, Path]) -> None:
    url, folder = payload_store
    path = folder / "report.html"
    assert main(["report", "--storage", url, "--experiment", "payload", "-o", str(path)]) == 0
    problems: list[str] = []
    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 2400})
        watch(page, problems)
        page.goto(path.as_uri())
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=30000)
        body = page.inner_text("body")
        assert f"best {METRIC}:" in body and FAILURE in body
        for name in (METRIC, HPARAM, CHOICE_NAME, IMG, SCRIPT):
            assert name in body, name
        assert METRIC in page.text_content("div.chart[data-figure=scores]")
        schedules = page.text_content("div.chart[data-figure=schedules]")
        assert HPARAM in schedules and CHOICE_NAME in schedules and IMG in schedules and SCRIPT in schedules
        assert_nothing_ran(page, problems)
        browser.close()
