"""Pages never run what a store holds: the dashboard's HTML and JSON-fed HTML, and the report, escape it."""

from __future__ import annotations

import html
from html.parser import HTMLParser
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from calls import build_payload_store
from checks import cli
from payloads import FAILURE, HPARAM, IMG, METRIC, PAYLOADS, SCRIPT
import poptrain
from poptrain.report.dashboard import create_app
from poptrain.report.html import report_html

class Tags(HTMLParser):
    """The elements of a page and their attribute names, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, [name for name, _ in attrs]))


RAW = (IMG, SCRIPT, "onerror=\"window", "<svg onload")


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('escape')}/p.db"
    build_payload_store(url)
    return url


def assert_escaped(page: str) -> None:
    for raw in RAW:
        assert raw not in page, raw


def test_dashboard_pages_escape_every_name_value_and_failure(store_url: str) -> None:
    client = TestClient(create_app(store_url))
    home = client.get("/")
    assert home.status_code == 200 and "payload" in home.text
    page = client.get("/experiments/payload")
    assert page.status_code == 200
    assert_escaped(page.text)
    assert html.escape(f"{HPARAM}=") in page.text and html.escape(FAILURE) in page.text
    member = client.get("/experiments/payload/members/0")
    assert member.status_code == 200
    assert_escaped(member.text)
    assert html.escape(HPARAM) in member.text and html.escape(IMG) in member.text
    failed = client.get("/experiments/payload/members/3")  # it raised before its first report
    assert failed.status_code == 200 and "has not reported" in failed.text and html.escape(FAILURE) in failed.text
    assert_escaped(failed.text)


def test_the_json_fed_members_table_is_escaped(store_url: str) -> None:
    data = TestClient(create_app(store_url)).get("/api/experiments/payload").json()
    members = data["members_html"]
    assert_escaped(members)
    assert html.escape(f"{HPARAM}=") in members and html.escape(FAILURE) in members
    # Plotly reads tags in its text: names reach it escaped (it shows them literally)
    figures = json.dumps(data["figures"])
    assert IMG not in figures and SCRIPT not in figures
    assert json.dumps(html.escape(METRIC, quote=False))[1:-1] in figures


def test_the_comparison_and_the_updates_are_escaped(store_url: str) -> None:
    client = TestClient(create_app(store_url))
    page = client.get("/compare?experiment=payload")
    assert page.status_code == 200 and html.escape("payload") in page.text
    assert_escaped(page.text)
    compare = client.get("/api/compare?experiment=payload").json()
    assert_escaped(compare["summary_html"])
    assert_escaped(json.dumps(compare["figures"]))
    assert json.dumps(html.escape(METRIC, quote=False))[1:-1] in json.dumps(compare["figures"])
    cursor = client.get("/api/experiments/payload").json()["cursor"]
    news = client.post("/api/experiments/payload/updates", json={"steps": {}, "event": None}).json()
    assert news["append"]["scores"] and news["cursor"] == cursor
    assert_escaped(json.dumps(news))
    assert all(p not in json.dumps(news) for p in PAYLOADS)
    assert html.escape(FAILURE) in news["members_html"]


def test_the_dashboard_sends_a_csp_that_allows_only_its_own_scripts(store_url: str) -> None:
    client = TestClient(create_app(store_url), raise_server_exceptions=False)
    for path in ("/", "/experiments/payload", "/api/experiments/payload", "/experiments/payload/members/0",
                 "/experiments/nope", "/static/dashboard.js", "/compare?experiment=payload",
                 "/api/compare?experiment=payload"):
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        script_src = re.search(r"script-src ([^;]*)", policy).group(1)
        assert script_src.split() == ["'self'"], policy  # no inline script, no handler, no CDN
        assert "default-src 'self'" in policy and response.headers["x-content-type-options"] == "nosniff"
    page = client.get("/experiments/payload").text
    tags = Tags()
    tags.feed(page)
    assert [t for t, attrs in tags.seen if t == "script" and "src" not in attrs] == []  # only files it serves run
    assert [(t, a) for t, attrs in tags.seen for a in attrs if a.startswith("on")] == []  # no event handler
    assert {t for t, _ in tags.seen} <= {"html", "head", "meta", "title", "link", "style", "body", "p", "a", "h1", "b",
                                         "span", "div", "table", "tr", "th", "td", "script",
                                         "label", "select", "option", "input"}  # the filters: no handler, no form
    script = client.get("/static/dashboard.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "members_html" in script.text


def test_the_report_escapes_the_metric_in_its_summary_and_everything_else(store_url: str) -> None:
    page = report_html(poptrain.load(store_url, "payload"))
    assert_escaped(page)
    assert f"best {html.escape(METRIC)}:" in page  # it was `<span>best <script>…`
    assert html.escape(FAILURE) in page and html.escape(HPARAM) in page
    policy = re.search(r"http-equiv='Content-Security-Policy' content=\"([^\"]*)\"", page).group(1)
    script_src = re.search(r"script-src ([^;]*)", policy).group(1).split()
    assert len(script_src) == 2 and all(s.startswith("'sha256-") for s in script_src)  # Plotly and the drawing, by hash


def test_one_corrupt_spec_leaves_the_list_of_experiments_readable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/two.db"
    build_payload_store(url, "good")
    build_payload_store(url, "broken")
    with sqlite3.connect(tmp_path / "two.db") as db:
        db.execute("UPDATE experiments SET spec = '{not json' WHERE name = 'broken'")
    home = TestClient(create_app(url), raise_server_exceptions=False).get("/")
    assert home.status_code == 200
    rows = re.findall(r"<tr>(.*?)</tr>", home.text)
    assert len(rows) == 3  # the header, then one row each
    good, broken = rows[1], rows[2]
    assert "/experiments/good" in good and "24/24" not in broken and "unreadable" in broken and "unreadable" not in good
    code, out, err = cli("status", "--storage", url)
    assert code == 0 and "good" in out and "unreadable" in out, err
    code, out, err = cli("report", "--storage", url, "--experiment", "broken", "-o", tmp_path / "b.html")
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "stored spec is not readable" in err


def test_result_does_not_import_the_report() -> None:
    code = ("import sys, poptrain, poptrain.result; "
            "print(sorted(m for m in sys.modules if m.startswith('poptrain.report') or m == 'plotly'))")
    env_path = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_report_and_the_dashboard_draw_the_same_figures(store_url: str) -> None:
    api = TestClient(create_app(store_url)).get("/api/experiments/payload").json()["figures"]
    page = report_html(poptrain.load(store_url, "payload"))
    blocks = dict(re.findall(r"<script type='application/json' id='figure-(\w+)'>(.*?)</script>", page))
    assert list(blocks) == ["scores", "lineage", "schedules", "hparams", "tree"] and set(api) == set(blocks)
    for key, text in blocks.items():
        assert json.loads(text) == api[key], key
    assert all(p not in json.dumps(api) for p in PAYLOADS)
