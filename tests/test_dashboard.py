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
    assert set(data["figures"]) == {"scores", "lineage", "schedules", "tree"}
    assert data["steps_done"] == 36 and data["live"] is False
    assert client.get("/static/plotly.min.js").text.startswith("/**")
    member = client.get("/experiments/d/members/1")
    assert member.status_code == 200 and "member 1" in member.text
    assert files_digest(store_url) == before  # reading wrote nothing


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
