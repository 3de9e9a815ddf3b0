"""Many ask/tell client processes on one PostgreSQL population (the loop of benchmarks/store.py --clients, smaller)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from faults import tally
from faults.helpers import ROOT, audit
from poptrain.store import open_store

pytestmark = pytest.mark.slow

CLIENTS, MEMBERS, STEPS = 12, 24, 8


def benchmark():
    """benchmarks/store.py as a module."""
    spec = importlib.util.spec_from_file_location("store_benchmark", os.path.join(ROOT, "benchmarks", "store.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_many_clients_bring_every_member_to_its_budget_once(postgres, tmp_path):
    url = postgres.new_database()
    times, _ = benchmark().clients(url, CLIENTS, MEMBERS, STEPS, 0.01, str(tmp_path / "checkpoints"))
    store = open_store(url, create=False)
    found = audit(store, "clients", STEPS, str(tmp_path / "checkpoints"))
    tally.add(**found.tally())
    found.assert_clean()  # every member at its budget, no interval recorded twice, every checkpoint verifies
    assert len(times["lease"]) == MEMBERS  # each member leased once: no client lost one to another
    assert len(times["decision"]) == MEMBERS * ((STEPS - 1) // 4) == len(times["ready tell"])
    assert len(times["tell"]) + len(times["ready tell"]) == MEMBERS * STEPS
    assert {r.worker for r in store.members("clients")} == {None}  # every lease given back
