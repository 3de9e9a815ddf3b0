"""Readers open SQLite read-only: they never change its journal mode, and a read-only folder is readable."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

from calls import build_payload_store, python
from checks import cli
from payloads import payload_experiment
import poptrain
from poptrain.report.dashboard import create_app
from poptrain.store import open_store


def journal(path: Path) -> str:
    """The journal mode a SQLite file's header records (bytes 18-19: 1 rollback, 2 WAL), read without SQLite."""
    header = path.read_bytes()[:20]
    return {(1, 1): "rollback", (2, 2): "wal"}[(header[18], header[19])]


def test_readers_leave_a_rollback_journal_store_in_that_mode(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    url = f"sqlite:///{db}"
    build_payload_store(url)
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    assert journal(db) == "rollback"
    assert cli("status", "--storage", url)[0] == 0
    assert cli("status", "--storage", url, "--experiment", "payload")[0] == 0
    assert cli("best", "--storage", url, "--experiment", "payload")[0] == 0
    assert cli("report", "--storage", url, "--experiment", "payload", "-o", tmp_path / "r.html")[0] == 0
    result = poptrain.load(url, "payload")
    assert len(result.frame()) > 0 and result.best().id >= 0
    client = TestClient(create_app(url))
    assert client.get("/").status_code == 200 and client.get("/api/experiments/payload").status_code == 200
    assert journal(db) == "rollback"  # it was switched to WAL by the first reader
    assert not os.path.exists(f"{db}-wal")


def test_a_store_in_a_read_only_folder_is_readable(tmp_path: Path) -> None:
    folder, out = tmp_path / "readonly", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    url = f"sqlite:///{folder}/s.db"
    build_payload_store(url)
    assert journal(folder / "s.db") == "wal" and not os.path.exists(folder / "s.db-shm")
    # root ignores folder permissions; without the capabilities that let it, it is held to them like anyone
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "as root this test needs util-linux's setpriv to give up the right to ignore permissions"
        prefix = (setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner")
    before = sorted(os.listdir(folder))
    os.chmod(folder, 0o555)
    try:
        denied = python(f"open({str(folder / 'probe')!r}, 'w')", prefix=prefix)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr  # the folder really is read-only
        code = (f"import sys; from poptrain.cli import main; "
                f"sys.exit(main(['status', '--storage', {url!r}]) or main(['status', '--storage', {url!r}, "
                f"'--experiment', 'payload']) or main(['best', '--storage', {url!r}, '--experiment', 'payload']) or "
                f"main(['report', '--storage', {url!r}, '--experiment', 'payload', '-o', {str(out / 'r.html')!r}]))")
        done = python(code, prefix=prefix)
        assert done.returncode == 0, done.stderr
        assert "is not a poptrain store" not in done.stderr and "payload" in done.stdout
        assert (out / "r.html").stat().st_size > 100_000
        assert sorted(os.listdir(folder)) == before
    finally:
        os.chmod(folder, 0o755)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_read_only_store_reads_and_cannot_write(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres").new_database() if kind == "postgresql" else f"sqlite:///{tmp_path}/w.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POPTRAIN_CHECKPOINTS", str(tmp_path / "ckpt"))  # a shared store has no default checkpoints
        payload_experiment(url)
    reader = open_store(url, create=False, read_only=True)
    assert reader.experiments() == ["payload"] and len(reader.reports("payload")) > 0
    with pytest.raises(DBAPIError, match="(?i)read-only|readonly"):
        reader.release_all("payload")
