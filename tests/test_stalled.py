"""Members whose last report is much older than their usual interval are flagged by status and the dashboard."""

from __future__ import annotations

import time

from starlette.testclient import TestClient

import poptrain
from poptrain.cli import main
from poptrain.report.dashboard import create_app
from poptrain.store import open_store


def stuck_store(tmp_path) -> str:
    """Member 0 reported every second, then nothing for 200 s while its worker still holds it."""
    url = f"sqlite:///{tmp_path}/s.db"
    exp = poptrain.Experiment(name="s", trainable="trainables:Quadratic", space={"lr": poptrain.LogUniform(0.01, 0.3)},
                              metric="score", population=2, steps=10, storage=url)
    exp.create()
    store = open_store(url)
    now = time.time()
    for member in (0, 1):
        held = store.claim("s", f"w{member}", 600, now, barrier=False)
        assert held is not None
    for step in range(1, 4):
        store.report("s", 0, "w0", step, 0.1, {"score": 0.1}, {"lr": 0.1}, now - 203 + step)
        store.report("s", 1, "w1", step, 0.1, {"score": 0.1}, {"lr": 0.1}, now - 3 + step)
    return url


def test_status_flags_a_member_that_stopped_reporting(tmp_path, capsys):
    url = stuck_store(tmp_path)
    stalled = poptrain.load(url, "s").stalled()
    assert list(stalled.member) == [0] and stalled.since.iloc[0] > 195 and stalled.usual.iloc[0] == 1.0
    assert main(["status", "--storage", url, "--experiment", "s"]) == 0
    out = capsys.readouterr().out
    assert "member 0 may be stuck: no report for 20" in out and "member 1 may be stuck" not in out


def test_the_dashboard_flags_it_too(tmp_path):
    url = stuck_store(tmp_path)
    page = TestClient(create_app(url)).get("/api/experiments/s").json()["members_html"]
    assert "may be stuck: no report for 20" in page and page.count("may be stuck") == 1


def test_a_reader_whose_clock_is_an_hour_ahead_sees_what_the_store_sees(tmp_path, monkeypatch):
    """Leases are held on the store's clock, so the stuck check reads that clock, not the reader's."""
    url = stuck_store(tmp_path)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    stalled = poptrain.load(url, "s").stalled()
    assert list(stalled.member) == [0] and 195 < stalled.since.iloc[0] < 300  # not member 1, not an hour late
