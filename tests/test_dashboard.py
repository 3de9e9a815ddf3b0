"""The dashboard's pages and API, and the bad input it must survive, without a browser."""

from __future__ import annotations

import gc
import hashlib
import os

import pytest
from starlette.testclient import TestClient

import poptrain
from poptrain.report.dashboard import create_app
from trainables import Quadratic


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{folder}/d.db"
    poptrain.Experiment(name="d", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.5)}, metric="score",
                        population=4, steps=9, ready=poptrain.Every(3), storage=url, seed=2).run(engine="serial")
    gc.collect()  # a store the run left unreferenced folds its WAL into the file when collected: now, not mid-test
    return url


def files_digest(url: str) -> str:
    path = url[len("sqlite:///"):]
    digest = hashlib.sha256()
    for name in (path, path + "-wal"):
        if os.path.exists(name):
            digest.update(open(name, "rb").read())
    return digest.hexdigest()


def test_pages_and_live_data(store_url):
    before = files_digest(store_url)
    client = TestClient(create_app(store_url))
    home = client.get("/")
    assert home.status_code == 200 and "/experiments/d" in home.text and "36/36" in home.text
    page = client.get("/experiments/d")
    assert page.status_code == 200
    for chart in ("scores", "lineage", "schedules", "tree"):
        assert f"id='chart-{chart}'" in page.text
    assert "chart-pareto" not in page.text  # one metric: no Pareto front
    assert "/static/plotly.min.js" in page.text and "https://" not in page.text  # served here, not from a CDN
    data = client.get("/api/experiments/d").json()
    assert set(data["figures"]) == {"scores", "lineage", "schedules", "hparams", "tree"}
    assert data["steps_done"] == 36 and data["live"] is False
    assert data["cursor"]["steps"] == {str(m): 9 for m in range(4)} and data["cursor"]["event"] >= 1
    assert client.get("/static/plotly.min.js").text.startswith("/**")
    member = client.get("/experiments/d/members/1")
    assert member.status_code == 200 and "member 1" in member.text
    assert files_digest(store_url) == before  # reading wrote nothing


def test_updates_send_only_what_is_new_since_the_cursor(store_url):
    client = TestClient(create_app(store_url))
    whole = client.get("/api/experiments/d").json()
    cursor = whole["cursor"]
    nothing = client.post("/api/experiments/d/updates", json=cursor).json()
    assert nothing["append"]["scores"] == [] and nothing["new_events"] == 0 and nothing["cursor"] == cursor
    assert set(nothing["figures"]) == {"hparams"} and len(nothing["figures"]["hparams"]["data"][0]["y"]) == 4
    behind = {**cursor, "steps": {**cursor["steps"], "1": 6}, "event": None}  # the page lacks member 1's last 3 steps
    news = client.post("/api/experiments/d/updates", json=behind).json()
    traces = {t["name"]: t for t in news["append"]["scores"]}
    assert traces["member 1"]["x"] == [7, 8, 9] and len(traces["member 1"]["y"]) == 3 and "member 0" not in traces
    assert news["new_events"] == whole["cursor"]["event"] and traces["exploit"]["customdata"]  # every event: none held
    assert [t["name"] for t in news["append"]["schedules"]] == ["member 1"]
    assert news["cursor"] == cursor
    rolled_back = client.post("/api/experiments/d/updates", json={**cursor, "steps": {**cursor["steps"], "2": 99}})
    assert rolled_back.json()["reset"] == [2]  # held further than it stands: sent again from its start
    assert [t["x"] for t in rolled_back.json()["append"]["scores"] if t["name"] == "member 2"] == [list(range(1, 10))]
    for body in (b"{not json", b'{"steps": 3}', b'[]'):
        bad = client.post("/api/experiments/d/updates", content=body)
        assert bad.status_code == 400 and "reload the page" in bad.json()["error"] or "not JSON" in bad.json()["error"]


def test_the_comparison_page_and_its_data(store_url, tmp_path):
    client = TestClient(create_app(store_url), raise_server_exceptions=False)
    page = client.get("/compare?experiment=d&experiment=d")
    assert page.status_code == 200 and "id='chart-compare-scores'" in page.text and "id='chart-compare-finals'" in page.text
    data = client.get("/api/compare?experiment=d").json()
    assert set(data["figures"]) == {"compare-scores", "compare-finals"} and data["live"] is False
    assert [t["name"] for t in data["figures"]["compare-scores"]["data"]] == ["d: best", "d: mean"]
    assert len(data["figures"]["compare-finals"]["data"][0]["y"]) == 4 and "36/36" in data["summary_html"]
    assert client.get("/compare").status_code == 400
    missing = client.get("/compare?experiment=d&experiment=nope")
    assert missing.status_code == 404 and "no experiment &#x27;nope&#x27;" in missing.text


@pytest.mark.parametrize("path, needle", [
    ("/experiments/nope", "no experiment &#x27;nope&#x27;"),
    ("/api/experiments/nope", "no experiment &#x27;nope&#x27;"),
    ("/experiments/d/members/99", "has no member 99"),
    ("/experiments/d/members/abc", "is not a member id"),
    ("/no/such/page", "no such page"),
])
def test_bad_requests_get_a_clear_page(store_url, path, needle):
    response = TestClient(create_app(store_url), raise_server_exceptions=False).get(path)
    assert response.status_code == 404
    assert needle in response.text and "Traceback" not in response.text


def test_a_store_that_does_not_exist(tmp_path):
    client = TestClient(create_app(f"sqlite:///{tmp_path}/missing.db"), raise_server_exceptions=False)
    response = client.get("/")
    assert response.status_code == 404 and "no store at" in response.text
    assert not os.path.exists(tmp_path / "missing.db")  # the dashboard never creates one
