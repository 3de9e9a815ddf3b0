"""The local engine with members that span several processes: each worker is a gloo group of 2 ranks."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import poptrain
from poptrain.engines import Local
from poptrain.store import CheckpointStore
from trainables import DDPRegression, ddp_function, weights_hash

pytestmark = pytest.mark.slow

POPULATION, STEPS = 4, 8


def experiment(tmp_path: Path, trainable: object = DDPRegression) -> poptrain.Experiment:
    return poptrain.Experiment(name="ranks", trainable=trainable, space={"lr": poptrain.LogUniform(0.001, 0.1)},
                               population=POPULATION, steps=STEPS, ready=poptrain.Every(2),
                               exploit=poptrain.Truncation(0.25), lease=2.0, max_failures=3, keep_checkpoints=STEPS,
                               storage=f"sqlite:///{tmp_path}/ranks.db", seed=1)


def logs(folder: Path) -> dict[str, dict[int, list[tuple[int, float, str, int]]]]:
    """group -> rank -> (seed, lr, weights hash, pid) at each train start."""
    found: dict[str, dict[int, list]] = {}
    for path in folder.glob("log.*.*"):
        _, group, rank = path.name.split(".")
        rows = [line.split() for line in path.read_text().splitlines()]
        found.setdefault(group, {})[int(rank)] = [(int(s), float(lr), h, int(pid)) for s, lr, h, pid in rows]
    return found


def test_each_worker_is_a_group_of_two_ranks_that_train_one_member_and_copy_together(tmp_path, monkeypatch):
    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(tmp_path / "log"))
    exp = experiment(tmp_path)
    result = exp.run(engine=Local(workers=2, ranks_per_member=2), progress=False)
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {STEPS}
    groups = logs(tmp_path)
    assert len(groups) == 2 and all(set(ranks) == {0, 1} for ranks in groups.values())
    for ranks in groups.values():  # both ranks hold the same member, lr and weights at every interval
        assert [row[:3] for row in ranks[0]] == [row[:3] for row in ranks[1]]
        assert len({row[3] for row in ranks[0]} | {row[3] for row in ranks[1]}) == 2  # two processes
    trained = [row for ranks in groups.values() for row in ranks[0]]
    assert len(trained) == POPULATION * STEPS
    copies_hold_their_sources(result, groups)


def copies_hold_their_sources(result: poptrain.Result, groups: dict) -> None:
    """Each copy trains on from its source's checkpointed weights, with the explored lr, on both ranks of its group."""
    seeds = {m.id: m.seed for m in result.store.members(result.name)}
    files = CheckpointStore(result.spec["checkpoints"])
    events = result.events()
    assert events
    for event in events:
        source = next(c for c in result.store.checkpoints(result.name, event.source) if c.step == event.source_step)
        copied = weights_hash(files.load(source.key, source.checksum)["model"])
        matches = [row for ranks in groups.values() for rank in (0, 1) for row in ranks[rank]
                   if row[0] == seeds[event.member] and row[2] == copied]
        assert len(matches) >= 2 and all(row[1] == pytest.approx(event.new_hparams["lr"]) for row in matches)


def test_a_killed_rank_costs_its_member_one_failure_and_the_run_finishes(tmp_path, monkeypatch):
    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(tmp_path / "log"))
    killed: list[int] = []

    def kill_a_second_rank() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for ranks in logs(tmp_path).values():
                if 1 in ranks and len(ranks[1]) >= 3:
                    killed.append(ranks[1][-1][3])
                    os.kill(killed[0], signal.SIGKILL)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_second_rank, daemon=True)
    killer.start()
    result = experiment(tmp_path).run(engine=Local(workers=2, ranks_per_member=2), progress=False)
    killer.join(5)
    assert killed, "no rank was killed"
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {STEPS}
    assert members.failures.sum() == 1  # the dead rank's member, charged once
    reports = result.frame()
    assert len(reports) == POPULATION * STEPS  # nothing recorded twice
    # (whether the replacement group trains anything depends on timing: the other group may finish the rest first)


def test_a_function_trainable_runs_as_a_group_of_two_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(tmp_path / "log"))
    exp = experiment(tmp_path, ddp_function)
    exp.synchronous = True  # generations: an exploit happens whatever the two groups' pace (asynchronously, once none did)
    result = exp.run(engine=Local(workers=2, ranks_per_member=2), progress=False)
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {STEPS} and result.events()
    groups = logs(tmp_path)
    for ranks in groups.values():
        assert [row[:3] for row in ranks[0]] == [row[:3] for row in ranks[1]]
    assert sum(len(ranks[0]) for ranks in groups.values()) == POPULATION * STEPS


def test_the_ray_engine_runs_each_member_as_a_placement_group_of_two_ranks(tmp_path, monkeypatch):
    tests = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(os.path.dirname(tests), "src"), tests,
                                                      os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("POPTRAIN_TEST_LOG", str(tmp_path / "log"))
    exp = experiment(tmp_path)
    exp.paths = [tests]  # Ray's workers import the trainable
    result = exp.run(engine="ray", workers=2, ranks_per_member=2, resources={"cpu": 0.5}, progress=False)
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {STEPS} and result.events()
    groups = logs(tmp_path)
    assert len(groups) == 2
    for ranks in groups.values():  # two actors, one member at a time, the same weights and lr on both
        assert set(ranks) == {0, 1} and [row[:3] for row in ranks[0]] == [row[:3] for row in ranks[1]]
        assert {row[3] for row in ranks[0]}.isdisjoint({row[3] for row in ranks[1]})
    assert sum(len(ranks[0]) for ranks in groups.values()) == POPULATION * STEPS
    copies_hold_their_sources(result, groups)


def test_a_member_group_ray_cannot_place_is_one_error_within_the_time_limit(tmp_path, monkeypatch):
    import time

    import ray

    from poptrain.engines import ray as ray_engine

    monkeypatch.setattr(ray_engine, "PLACEMENT_TIMEOUT", 3.0)
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        pool = ray_engine.ActorPool(ray, f"sqlite:///{tmp_path}/x.db", "x", None, 1, {"cpu": 1.0, "gpu": 0.0}, ranks=2)
        started = time.monotonic()
        with pytest.raises(poptrain.PoptrainError, match="could not place a member's 2 ranks within 3 s"):
            pool.start()  # two bundles of one CPU on a one-CPU Ray never fit
        assert time.monotonic() - started < 30
    finally:
        ray.shutdown()
