"""A storage URL's password is never shown: every command, page, log line, report and written spec masks it."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from checks import cli
import poptrain
from poptrain.redact import scrub, shown, without_password
from poptrain.report.dashboard import create_app
from poptrain.store import open_store, sql

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PASSWORD = f"Pw-{uuid.uuid4().hex[:12]}"  # one string that appears nowhere unless it leaked
NAME = "toy_quadratic"


@pytest.mark.parametrize("url, seen, kept", [
    ("postgresql+psycopg://ann:PW@db.example:5432/pbt", "postgresql+psycopg://ann:***@db.example:5432/pbt",
     "postgresql+psycopg://ann@db.example:5432/pbt"),
    ("postgresql://ann:p%40ss@db/pbt?sslmode=require", "postgresql://ann:***@db/pbt?sslmode=require",
     "postgresql://ann@db/pbt?sslmode=require"),
    ("postgresql://ann:p@ss@db/pbt", "postgresql://ann:***@db/pbt", "postgresql://ann@db/pbt"),
    ("postgresql://ann@db/pbt?password=PW&sslmode=require", "postgresql://ann@db/pbt?password=***&sslmode=require",
     "postgresql://ann@db/pbt?sslmode=require"),
    ("mysql://u:PW@h/db", "mysql://u:***@h/db", "mysql://u@h/db"),
    ("s3://AKIAKEY:PW@bucket/run", "s3://AKIAKEY:***@bucket/run", "s3://AKIAKEY@bucket/run"),
    ("http://u:PW@mlflow:5000", "http://u:***@mlflow:5000", "http://u@mlflow:5000"),
    ("gs://bucket/run?token=PW", "gs://bucket/run?token=***", "gs://bucket/run"),
    ("sqlite:////tmp/a b/x.db", "sqlite:////tmp/a b/x.db", "sqlite:////tmp/a b/x.db"),
    ("sqlite:///runs/x.db", "sqlite:///runs/x.db", "sqlite:///runs/x.db"),
    ("memory://m", "memory://m", "memory://m"),
    ("/shared/ckpts", "/shared/ckpts", "/shared/ckpts"),
])
def test_one_rule_renders_every_url(url: str, seen: str, kept: str) -> None:
    assert shown(url) == seen and without_password(url) == kept
    assert scrub(f"error: no experiment 'x' in {url} (it holds: a)") == f"error: no experiment 'x' in {seen} (it holds: a)"
    assert scrub(repr(url)) == repr(seen)


def secret_url(postgres: Any) -> str:
    """A fresh PostgreSQL database, its URL carrying PASSWORD (the test server trusts 127.0.0.1, so any works)."""
    url = postgres.new_database()
    assert "@" in url and ":" not in url.split("://")[1].split("@")[0]
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def toy_spec(folder: Path) -> Path:
    text = (EXAMPLES / "toy_quadratic.toml").read_text().replace("steps = 200", "steps = 8")
    path = folder / "spec.toml"
    path.write_text(f"paths = [{json.dumps(str(EXAMPLES))}]\n{text}")
    return path


def assert_no_password(where: str, text: str) -> None:
    assert PASSWORD not in text, f"the password shows in {where}: {text[:3000]}"


def assert_no_password_in_files(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), f"the password is written to {path}"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL a SQL store is opened with: none may have lost its password (it would not connect)."""
    urls: list[str] = []
    real = sql.SQLStore.__init__

    def recording(self: sql.SQLStore, url: str, *args: Any, **kwargs: Any) -> None:
        urls.append(url)
        real(self, url, *args, **kwargs)

    monkeypatch.setattr(sql.SQLStore, "__init__", recording)
    return urls


def test_every_command_and_page_hides_the_password(postgres: Any, tmp_path: Path, opened: list[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url, spec, ckpts = secret_url(postgres), toy_spec(tmp_path), tmp_path / "ckpts"
    monkeypatch.chdir(tmp_path)
    said: list[str] = []

    def run(*argv: Any, code: int = 0) -> str:
        got, out, err = cli(*argv)
        said.append(out + err)
        assert_no_password(f"`poptrain {' '.join(map(str, argv))}`", out + err)
        assert got == code, (argv, out, err)
        return out + err

    out = run("create", spec, "--storage", url, "--checkpoints", ckpts)
    assert "postgres:***@" in out
    out = run("run", spec, "--storage", url, "--checkpoints", ckpts, "--engine", "serial")
    assert f"inspect with: poptrain status --storage {shown(url)} --experiment {NAME}" in out
    run("run", spec, "--storage", url, "--checkpoints", ckpts, "--engine", "serial", "--quiet")  # stored: resumes
    assert "postgres:***@" in run("status", "--storage", url)
    run("status", "--storage", url, "--experiment", NAME)
    run("best", "--storage", url, "--experiment", NAME)
    run("resume", "--storage", url, "--experiment", NAME, "--engine", "serial")
    run("worker", "--storage", url, "--experiment", NAME, "--quiet")
    run("report", "--storage", url, "--experiment", NAME, "-o", tmp_path / "report.html")
    assert "postgres:***@" in (tmp_path / "report.html").read_text()
    run("replay", "--storage", url, "--experiment", NAME, "-o", tmp_path / "replay.toml", "--engine", "serial")
    replay = (tmp_path / "replay.toml").read_text()
    assert f'storage = "{without_password(url)}"' in replay
    comment = replay.split("\nstorage = ")[0].splitlines()[-2:]  # the two lines above it say how to give it
    assert all(line.startswith("# ") for line in comment)
    assert "POPTRAIN_STORAGE" in comment[0] and "--storage" in comment[1]
    run("export", "--storage", url, "--experiment", NAME, "--to", "tensorboard", tmp_path / "tb")
    # the store is named once, in the environment, where no command line shows it
    monkeypatch.setenv("POPTRAIN_STORAGE", url)
    run("run", tmp_path / "replay.toml", "--engine", "serial", "--quiet")
    run("status")
    monkeypatch.delenv("POPTRAIN_STORAGE")
    # a mistake names the store, without its password
    for command in (("status",), ("best",), ("resume",), ("report", "-o", tmp_path / "r2.html"),
                    ("replay", "-o", tmp_path / "r2.toml"), ("worker",), ("export", "--to", "tensorboard", "tb2")):
        out = run(*command, "--storage", url, "--experiment", "nope", code=2)
        assert "no experiment 'nope'" in out and "postgres:***@" in out, out
    out = run("status", "--storage", f"mysql://u:{PASSWORD}@127.0.0.1/db", code=2)
    assert "mysql://u:***@127.0.0.1/db" in out and "driver" in out
    unreachable = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/db"
    assert "cannot reach storage" in run("status", "--storage", unreachable, code=2)
    monkeypatch.setattr(sql.SQLStore, "retry_for", 0.3)
    out = run("worker", "--storage", unreachable, "--experiment", NAME, code=2)  # retries: log lines, then an error
    assert "WARNING" in out and "unreachable" in out and "u:***@" in out

    stored = open_store(url, create=False).get_spec(NAME)
    assert stored["storage"] == without_password(url)
    assert_no_password("the stored specs", json.dumps([open_store(url, create=False).get_spec(n)
                                                       for n in open_store(url, create=False).experiments()]))
    # nobody connected with a URL that had lost its password
    assert opened and all(PASSWORD in u for u in opened if u.startswith("postgresql+psycopg://postgres"))
    assert_no_password_in_files(tmp_path)


def test_the_interrupt_hint_and_the_dashboard_hide_the_password(postgres: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url, spec = secret_url(postgres), toy_spec(tmp_path)
    monkeypatch.setenv("POPTRAIN_CHECKPOINTS", str(tmp_path / "ckpts"))
    assert cli("run", spec, "--storage", url, "--engine", "serial", "--quiet")[0] == 0

    def interrupted(self: poptrain.Experiment, **_: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(poptrain.Experiment, "run", interrupted)
        code, out, err = cli("run", spec, "--storage", url, "--engine", "serial", "--quiet")
    assert code == 130 and f"poptrain resume --storage {shown(url)} --experiment {NAME}" in err
    assert_no_password("the interrupt hint", out + err)

    served: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **_: served.update(app=app))
    code, out, err = cli("dashboard", "--storage", url, "--port", "8124")
    assert code == 0 and "postgres:***@" in out
    assert_no_password("the dashboard's start-up line", out + err)
    client = TestClient(served["app"], raise_server_exceptions=False)
    pages = {"/": 200, f"/experiments/{NAME}": 200, f"/experiments/{NAME}/members/0": 200,
             f"/api/experiments/{NAME}": 200, "/experiments/nope": 404, "/api/experiments/nope": 404,
             f"/experiments/{NAME}/members/99": 404, "/experiments/to%00y": 500, "/no/such/page": 404}
    for path, status in pages.items():
        page = client.get(path)
        assert page.status_code == status, (path, page.text)
        assert_no_password(f"the page {path}", page.text)
        assert "SELECT" not in page.text and "Traceback" not in page.text, (path, page.text)
    assert "postgres:***@" in client.get("/").text and "postgres:***@" in client.get("/experiments/nope").text
    # a dashboard of an unreachable store: the error page names it, masked
    down = TestClient(create_app(f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/db"), raise_server_exceptions=False)
    page = down.get("/")
    assert page.status_code == 404 and "u:***@127.0.0.1:1/db" in page.text
    assert_no_password("the unreachable store's page", page.text)
    assert_no_password_in_files(tmp_path)


def test_the_python_api_stores_and_names_no_password(postgres: Any, tmp_path: Path) -> None:
    url = secret_url(postgres)
    from trainables import Quadratic

    experiment = poptrain.Experiment(name="api", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.5)},
                                     metric="score", population=2, steps=3, ready=poptrain.Every(3), storage=url,
                                     checkpoints=str(tmp_path / "c"))
    assert experiment.create() is True and experiment.create() is False  # the same spec, stored without it
    assert_no_password("the experiment's repr", repr(experiment))
    result = experiment.run(engine="serial")
    assert result.spec["storage"] == without_password(url)
    assert_no_password("the replay spec", json.dumps(result.replay_spec()))
    with pytest.raises(poptrain.errors.StorageError) as caught:
        poptrain.load(url, "nope")
    assert_no_password("the missing experiment's error", str(caught.value))
    assert os.path.exists(tmp_path / "c")
