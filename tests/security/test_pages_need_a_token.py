"""The dashboard off loopback asks for its token; its error pages are one line, never SQL or a traceback."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from checks import cli
import poptrain
from poptrain.report import dashboard
from poptrain.report.dashboard import TokenGate, access_token, create_app, is_loopback, needs_token, startup_lines
from trainables import Quadratic

TOKEN = "t0ken-for-the-tests-0123456789"


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('token')}/t.db"
    poptrain.Experiment(name="t", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.5)}, metric="score",
                        population=2, steps=3, ready=poptrain.Every(3), storage=url, seed=1).run(engine="serial")
    return url


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.7", False), ("10.0.0.1", False), ("myhost.example", False),
    ("", False)])
def test_only_loopback_goes_without_a_token(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert needs_token(host) is not loopback
    assert needs_token(host, TOKEN)  # a token given is asked for, loopback or not
    made = access_token(host)
    assert (made is None) is loopback
    if made is not None:
        assert len(made) >= 24 and made != access_token(host)  # random, each start its own


def test_a_given_token_is_used_and_a_short_one_refused() -> None:
    assert access_token("0.0.0.0", TOKEN) == TOKEN
    with pytest.raises(poptrain.errors.SpecError, match="--token must be at least 8 characters"):
        access_token("0.0.0.0", "short")


def test_requests_without_the_token_get_401_and_nothing_of_the_store(store_url: str) -> None:
    client = TestClient(create_app(store_url, token=TOKEN), follow_redirects=False)
    for path in ("/", "/experiments/t", "/api/experiments/t", "/experiments/t/members/0", "/static/dashboard.js",
                 "/experiments/nope", f"/?token={TOKEN}x", "/?token="):
        page = client.get(path)
        assert page.status_code == 401, path
        assert page.headers["www-authenticate"] == "Bearer" and "content-security-policy" in page.headers
        assert "Authorization: Bearer" in page.text and "t.db" not in page.text and "lr=" not in page.text
    assert client.get("/", headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401
    client.cookies.set("poptrain_token", TOKEN)
    assert client.get("/").status_code == 401  # only its own cookie


def test_the_token_once_in_the_address_then_a_cookie(store_url: str) -> None:
    client = TestClient(create_app(store_url, token=TOKEN), follow_redirects=False)
    first = client.get(f"/experiments/t?token={TOKEN}&x=1")
    assert first.status_code == 303 and first.headers["location"] == "/experiments/t?x=1"  # the token leaves the URL
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and TOKEN in cookie
    assert client.get("/experiments/t").status_code == 200  # the cookie carries it now
    odd = client.get(f"/experiments/a%2Fb?token={TOKEN}")
    assert odd.status_code == 303 and odd.headers["location"] == "/experiments/a%2Fb"
    assert redirect_of(b"//evil.example/x") == b"/evil.example/x"  # never to another site
    assert client.get("/api/experiments/t").json()["steps_done"] == 6
    bearer = TestClient(create_app(store_url, token=TOKEN))
    assert bearer.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def redirect_of(raw_path: bytes) -> bytes:
    """Where the gate sends a request for `raw_path` that carries the token (an ASGI call by hand)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": raw_path.decode(), "raw_path": raw_path,
             "query_string": f"token={TOKEN}".encode(), "headers": [], "scheme": "http", "server": ("x", 80)}
    asyncio.run(TokenGate(None, TOKEN)(scope, receive, send))
    return dict(sent[0]["headers"])[b"location"]


def test_loopback_without_a_token_is_open(store_url: str) -> None:
    assert TestClient(create_app(store_url)).get("/").status_code == 200


def test_every_interface_is_warned_and_the_token_is_printed_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    token = access_token("0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="poptrain"):
        lines = startup_lines("sqlite:///x.db", "0.0.0.0", 8050, token, generated=True)
    assert any(f"http://0.0.0.0:8050/?token={token}" in line for line in lines)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "every network interface" in warnings[0] and token not in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="poptrain"):
        mine = startup_lines("sqlite:///x.db", "192.168.1.7", 8050, TOKEN, generated=False)
    assert not caplog.records and not any(TOKEN in line for line in mine)  # a token the user gave is not echoed


def test_the_dashboard_command_on_every_interface(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **_: served.update(app=app, host=host, port=port))
    code, out, err = cli("dashboard", "--storage", store_url, "--host", "0.0.0.0", "--port", "8123")
    assert code == 0, err
    assert "?token=" in out and err.count("\n") == 1 and "WARNING" in err and "every network interface" in err
    token = out.split("?token=")[1].split()[0]
    assert token not in err
    client = TestClient(served["app"])
    assert client.get("/").status_code == 401
    assert client.get(f"/?token={token}").status_code == 200
    monkeypatch.setenv("POPTRAIN_DASHBOARD_TOKEN", TOKEN)
    code, out, err = cli("dashboard", "--storage", store_url, "--host", "127.0.0.1", "--port", "8123")
    assert code == 0 and TOKEN not in out and err == ""
    assert TestClient(served["app"]).get("/").status_code == 401  # asked for on loopback too, once given
    code, out, err = cli("dashboard", "--storage", store_url, "--token", "abc")
    assert code == 2 and "--token must be at least 8 characters" in err


def test_a_500_page_is_one_line_without_sql(store_url: str, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    sql = "SELECT members.hparams FROM members WHERE members.experiment = %(experiment_1)s"

    def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError(sql, {"experiment_1": "t"}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(dashboard.Result, "progress", broken)
    client = TestClient(create_app(store_url), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="poptrain"):
        page = client.get("/api/experiments/t")
    assert page.status_code == 500
    assert "SELECT" not in page.text and "Traceback" not in page.text and "experiment_1" not in page.text
    assert "could not read this page (OperationalError)" in page.text
    message = page.text.split("class='error'>")[1].split("</p>")[0]
    assert "\n" not in message
    assert any("SELECT" in (r.exc_text or "") or r.exc_info for r in caplog.records)  # the details: in the log
