"""A Ray cluster of a head and two worker nodes on this machine (PostgreSQL store, checkpoints on S3): a worker node
removed mid-run, then an interval stuck on the other node past interval_timeout.

The run's driver is `poptrain resume --engine ray --address ...` in a process of its own, as on a
real cluster: a driver that this test process had connected after an earlier local Ray session
(the engine suite's) saw every actor cancelled at once ("all references to the actor were removed").
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict

import pytest

import poptrain
from faults import tally
from faults.helpers import ROOT, TESTS, audit, experiment, steps_done, wait_until
from poptrain.store import open_store
from trainables import HangsOnce

pytestmark = pytest.mark.slow

POPULATION, STEPS, WORKERS = 8, 12, 4


@pytest.fixture
def cluster(s3, tmp_path, monkeypatch):
    """A head node without CPUs (the driver only) and two worker nodes of 2 CPUs; its processes inherit this env."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(ROOT, "src"), TESTS]))
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.05")
    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(tmp_path / "trained.log"))
    monkeypatch.setenv("POPTRAIN_TEST_HANG", str(tmp_path / "hang"))
    small = {"object_store_memory": 80 * 2**20}
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **small})
    try:
        workers = [nodes.add_node(num_cpus=2, **small) for _ in range(2)]
        nodes.wait_for_nodes(timeout=60)
        yield nodes, workers
    finally:
        for node in list(nodes.worker_nodes):  # no graceful stop needed: the test is over
            nodes.remove_node(node, allow_graceful=False)
        nodes.shutdown()


def driver_log(folder) -> str:
    """What the run's driver printed (its last 4,000 characters)."""
    return (folder / "driver.log").read_text()[-4000:]


def node_log(path: str) -> list[tuple[int, int, str]]:
    """NodeLog's lines in the order they were written: (seed, step, node id)."""
    with open(path) as f:
        return [(int(seed), int(step), node) for seed, step, node in (line.split() for line in f)]


def node_with_progress(store, workers) -> tuple | None:
    """(the worker node to remove, the one to keep) once a member part-way through, with a checkpoint past step 0,
    has trained on a node: removing that node must then resume it from that checkpoint, not from scratch."""
    members = {m.seed: m for m in store.members("f")}
    for seed, _, node in reversed(node_log(os.environ["POPTRAIN_TEST_LOG"])):
        member = members.get(seed)
        # an interval (3 steps) still to go, so it cannot finish between the choice and the removal
        if member is not None and member.step <= STEPS - 3 and any(c.step for c in store.checkpoints("f", member.id)):
            for i, worker in enumerate(workers):
                if worker.node_id == node:
                    return worker, workers[1 - i]
    return None


def test_a_removed_worker_node_costs_no_interval_and_a_stuck_interval_is_ended(cluster, postgres, s3, tmp_path):
    nodes, workers = cluster
    url = postgres.new_database()
    experiment(url, trainable=HangsOnce, population=POPULATION, steps=STEPS, checkpoints=f"{s3}/nodes",
               max_failures=3).create()
    # the limit sits well above an interval with its S3 save on a loaded 2-core machine (2 s ended healthy ones in CI)
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "poptrain", "resume", "--storage", url, "--experiment", "f",
                               "--engine", "ray", "--address", nodes.address, "--workers", str(WORKERS),
                               "--interval-timeout", "8", "--quiet"], stdout=log, stderr=subprocess.STDOUT)
    try:
        store = open_store(url)
        # a third of the intervals trained: each node's two actors hold members part-way through
        wait_until(lambda: steps_done(url, "f") >= POPULATION * STEPS // 3 or driver.poll() is not None,
                   "a third of the intervals", timeout=90)
        # the node removed is one that trained a member now past its first checkpoint and short of its budget
        # (which node that is, and whether the first members to start are past it yet, is up to the scheduler)
        chosen = None

        def chose() -> bool:
            nonlocal chosen
            chosen = node_with_progress(store, workers)
            return chosen is not None or driver.poll() is not None

        wait_until(chose, "a member past its first checkpoint", timeout=60)
        assert driver.poll() is None, f"the run ended before the node could be removed:\n{driver_log(tmp_path)}"
        removed, kept = chosen
        at_removal = {m.id: m for m in store.members("f")}
        nodes.remove_node(removed)
        done = steps_done(url, "f")
        wait_until(lambda: steps_done(url, "f") >= done + 8 or driver.poll() is not None, "intervals after the removal",
                   timeout=60)
        open(os.environ["POPTRAIN_TEST_HANG"], "w").close()  # the next interval to start, on the kept node, hangs
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        log.close()
    assert driver.returncode == 0, driver_log(tmp_path)
    result = poptrain.load(url, "f")
    found = audit(result.store, "f", STEPS, f"{s3}/nodes")
    tally.add(nodes_removed=1, **found.tally())
    found.assert_clean()  # every member at its budget, no interval recorded twice, every checkpoint verifies

    members = {m.id: m for m in result.store.members("f")}
    charged = [m for m in members.values() if m.failures]
    assert len(charged) == 1 and charged[0].failures == 1, charged  # the node's removal charged nobody
    assert "interval_timeout" in charged[0].error

    seeds = {m.seed: m.id for m in members.values()}
    lines: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for seed, step, node in node_log(os.environ["POPTRAIN_TEST_LOG"]):
        lines[seeds[seed]].append((step, node))
    gone = removed.node_id
    moved = [i for i in lines if any(node == gone for _, node in lines[i]) and at_removal[i].step < STEPS]
    assert moved, "no member was training on the removed node"
    resumed_at = {}
    for i in moved:
        last = max(k for k, (_, node) in enumerate(lines[i]) if node == gone)
        after = lines[i][last + 1:]
        assert after and {node for _, node in after} == {kept.node_id}, (i, after)  # the other node took it over
        resumed_at[i] = after[0][0] - 1  # the step of the checkpoint it restarted from, taken before the removal
        assert resumed_at[i] in {c.step for c in result.store.checkpoints("f", i)} | {0}, (i, resumed_at[i])
    assert max(resumed_at.values()) > 0, resumed_at  # not all from scratch
