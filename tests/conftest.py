"""Shared fixtures: every store the project ships, and the examples folder on the path."""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)


def _defaults_in_the_repository() -> set[str]:
    """What a run with the default storage or checkpoints leaves in the current folder (the repository root)."""
    return {name for name in os.listdir(ROOT) if name.endswith((".checkpoints", ".db", ".db.lock"))}


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_repository():
    """A test that forgets to give a storage under tmp_path fails instead of leaving a store or checkpoints here."""
    before = _defaults_in_the_repository()
    yield
    left = sorted(_defaults_in_the_repository() - before)
    assert not left, f"the tests wrote {', '.join(left)} into {ROOT}: give each run a storage under tmp_path"


@pytest.fixture(scope="session")
def postgres():
    """One throw-away PostgreSQL server for the whole test session (never skipped: it must run in CI)."""
    from pg import Postgres

    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh storage URL for each store implementation (the shared conformance suite)."""
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex}"
    if request.param == "postgresql":
        # a shared store has no default checkpoints: a spec without them takes POPTRAIN_CHECKPOINTS
        request.getfixturevalue("monkeypatch").setenv("POPTRAIN_CHECKPOINTS", str(tmp_path / "checkpoints"))
        return request.getfixturevalue("postgres").new_database()
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture(scope="session")
def s3():
    """An S3 endpoint on a free local port with one bucket; worker processes find it through the environment."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = dict(os.environ)
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("poptrain-test")
    yield "s3://poptrain-test"
    server.stop()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def restore_poptrain_logger():
    """poptrain.cli.main() configures the `poptrain` logger; no other test should inherit that."""
    log = logging.getLogger("poptrain")
    level, handlers = log.level, list(log.handlers)
    yield
    log.setLevel(level)
    log.handlers[:] = handlers


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread, as the engines' workers use: on a busy 2-core machine two make tiny steps far slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
