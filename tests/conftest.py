"""Shared fixtures: every store the project ships, and the examples folder on the path."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)


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
        request.getfixturevalue("monkeypatch").chdir(tmp_path)  # default checkpoints land in ./poptrain-checkpoints
        return request.getfixturevalue("postgres").new_database()
    return f"sqlite:///{tmp_path}/store.db"
