"""Storage URLs, output files and flags a user gets wrong: one `error:` line each, exit code 2, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from calls import build_payload_store, one_error
from checks import cli
import poptrain
from poptrain.errors import StorageError


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('mistakes')}/p.db"
    build_payload_store(url)
    return url


@pytest.mark.parametrize("url", ["foo://bar", "http://example.com/store"])
def test_an_unknown_scheme_lists_the_ones_poptrain_knows(url: str) -> None:
    line = one_error(*cli("status", "--storage", url), url, "sqlite", "postgresql", "memory")
    assert "NoSuchModuleError" not in line
    one_error(*cli("best", "--storage", url, "--experiment", "x"), "sqlite", "postgresql", "memory")
    with pytest.raises(StorageError, match="does not know the scheme"):
        poptrain.load(url, "x")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused_with_the_reason(url: str) -> None:
    one_error(*cli("status", "--storage", url), "in-memory SQLite", "other processes", "sqlite:///path")
    one_error(*cli("report", "--storage", url, "--experiment", "x", "-o", "/tmp/never-written.html"), "in-memory")


def test_report_to_a_folder_that_does_not_exist(store_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"  # not /nonexistent itself: anything on the machine may have made that
    one_error(*cli("report", "--storage", store_url, "--experiment", "payload", "-o", missing / "x.html"),
              str(missing / "x.html"), "does not exist", f"mkdir -p {missing}")
    assert not missing.exists()


def test_report_to_a_folder_instead_of_a_file(store_url: str, tmp_path: Path) -> None:
    one_error(*cli("report", "--storage", store_url, "--experiment", "payload", "-o", tmp_path),
              str(tmp_path), "is a folder", str(tmp_path / "out.html"))


def test_a_report_of_several_experiments_names_the_one_given_twice_or_missing(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    one_error(*cli("report", "--storage", store_url, "--experiment", "payload", "--experiment", "payload", "-o", out),
              "--experiment payload is given twice")
    one_error(*cli("report", "--storage", store_url, "--experiment", "payload", "--experiment", "nope", "-o", out),
              "no experiment 'nope'", "payload")
    assert not out.exists()


def test_replay_to_a_folder_that_does_not_exist(store_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    one_error(*cli("replay", "--storage", store_url, "--experiment", "payload", "--no-run",
                   "-o", missing / "replay.toml"), str(missing / "replay.toml"), "does not exist")
    assert not missing.exists()


def test_replay_of_a_member_that_does_not_exist_keeps_the_output_file(store_url: str, tmp_path: Path) -> None:
    output = tmp_path / "replay.toml"
    output.write_text("# the user's own file\n")
    one_error(*cli("replay", "--storage", store_url, "--experiment", "payload", "--member", "99", "--no-run",
                   "-o", output), "no member 99", "0–3")
    assert output.read_text() == "# the user's own file\n"  # it was truncated to 0 bytes before the KeyError
    assert cli("replay", "--storage", store_url, "--experiment", "payload", "--member", "1", "--no-run",
               "-o", output)[0] == 0
    assert "schedule" in output.read_text()


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_dashboard_port_out_of_range(store_url: str, port: str) -> None:
    one_error(*cli("dashboard", "--storage", store_url, "--port", port), f"--port {port}", "1..65535")


def test_dashboard_port_0_serves_on_a_free_port_it_names(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, object] = {}
    monkeypatch.setattr("poptrain.report.dashboard.serve", lambda storage, host, port, **_: served.update(port=port))
    code, out, err = cli("dashboard", "--storage", store_url, "--port", "0")
    assert code == 0, err
    port = served["port"]
    assert isinstance(port, int) and 1 <= port <= 65535 and f"http://127.0.0.1:{port}/" in out
