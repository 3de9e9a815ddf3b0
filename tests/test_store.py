"""The conformance suite every population store must pass (memory and SQLite)."""

from __future__ import annotations

import math
import time

import pytest

from poptrain.errors import StorageError
from poptrain.store import CheckpointRecord, Event, MemberRecord, open_store

SPEC = {"name": "e", "steps": 10, "mode": "max"}


def make(storage: str, n: int = 3):
    store = open_store(storage)
    store.create_experiment("e", SPEC, [MemberRecord(id=i, seed=i, hparams={"lr": 0.1 * (i + 1)},
                                                     initial_hparams={"lr": 0.1 * (i + 1)}) for i in range(n)])
    return store


def ckpt(member: int, step: int, created: float | None = None, hparams=None, pending=False) -> CheckpointRecord:
    return CheckpointRecord(member=member, seq=0, step=step, key=f"k{member}-{step}", checksum="x",
                            hparams=hparams or {"lr": 0.5}, last_ready=step, pending=pending,
                            created=created if created is not None else time.time())


def test_spec_round_trip_and_missing_experiment(storage):
    store = make(storage)
    assert store.get_spec("e") == SPEC
    assert store.experiments() == ["e"]
    with pytest.raises(StorageError, match="no experiment 'nope'.*holds: e"):
        store.get_spec("nope")
    with pytest.raises(StorageError, match="already exists"):
        store.create_experiment("e", SPEC, [])


def test_claim_prefers_lowest_step_then_own_member(storage):
    store = make(storage)
    now = time.time()
    first = store.claim("e", "w1", 10, now, 10, barrier=False)
    assert first.id == 0
    store.report("e", 0, 1, 0.5, {"score": 0.5}, {"lr": 0.1}, now)
    second = store.claim("e", "w2", 10, now, 10, barrier=False)
    assert second.id == 1  # member 0 is leased by w1, and is ahead
    third = store.claim("e", "w1", 10, now, 10, barrier=False)
    assert third.id == 2  # lowest step first, even before its own member 0
    store.report("e", 2, 1, 0.1, {}, {"lr": 0.3}, now)
    assert store.claim("e", "w1", 10, now, 10, barrier=False).id == 0  # own first among equal steps


def test_leases_exclude_other_workers_until_expiry(storage):
    store = make(storage, n=1)
    now = time.time()
    assert store.claim("e", "a", 5, now, 10, barrier=False).id == 0
    assert store.claim("e", "b", 5, now + 1, 10, barrier=False) is None
    store.renew("e", "a", 5, now + 4)
    assert store.claim("e", "b", 5, now + 6, 10, barrier=False) is None
    assert store.claim("e", "b", 5, now + 10, 10, barrier=False).id == 0  # a's lease expired
    assert store.expire_worker("e", "b") == 1
    assert store.claim("e", "c", 5, now + 10.5, 10, barrier=False).worker == "c"  # b's lease ended at once


def test_barrier_holds_pending_member_until_everyone_reaches_its_step(storage):
    store = make(storage, n=2)
    now = time.time()
    for step in (1, 2):
        store.report("e", 0, step, 1.0, {}, {"lr": 0.1}, now)
    store.add_checkpoint("e", ckpt(0, 2, pending=True), version=2, keep=3, now=now)
    assert store.member("e", 0).pending and store.member("e", 0).last_ready == 2
    store.report("e", 1, 1, 1.0, {}, {"lr": 0.2}, now)
    claimed = store.claim("e", "w", 5, now, 10, barrier=True)
    assert claimed.id == 1
    store.release("e", 1, "w")
    store.report("e", 1, 2, 1.0, {}, {"lr": 0.2}, now)
    store.release("e", 1, "w")
    assert store.claim("e", "w", 5, now, 10, barrier=True).id == 0  # everyone is at step 2 now


def test_reports_versions_and_recent_scores(storage):
    store = make(storage)
    now = time.time()
    for step, score in enumerate([0.1, 0.2, float("nan"), 0.4], start=1):
        store.report("e", 0, step, score, {"acc": score}, {"lr": 0.1}, now)
    m = store.member("e", 0)
    assert (m.step, m.version, m.last_score) == (4, 4, 0.4)
    assert store.recent_scores("e", 3) == {0: [0.2, None, 0.4]}
    assert store.recent_scores("e", 1) == {0: [0.4]}
    assert store.recent_scores("e", 2, at_step=2) == {0: [0.1, 0.2]}
    reports = store.reports("e")
    assert [r.step for r in reports] == [1, 2, 3, 4]
    assert reports[2].score is None and math.isnan(reports[2].metrics["acc"])


def test_exploit_event_changes_hparams_and_lineage(storage):
    store = make(storage)
    ev = Event(member=1, step=4, source=0, source_step=4, old_hparams={"lr": 0.2}, new_hparams={"lr": 0.12},
               time=time.time())
    store.record_exploit("e", ev)
    assert store.member("e", 1).hparams == {"lr": 0.12}
    assert store.events("e") == [ev]
    assert store.progress("e", "max").exploits == 1


def test_rollback_drops_work_after_the_checkpoint(storage):
    store = make(storage)
    now = time.time()
    for step in range(1, 7):
        store.report("e", 0, step, step / 10, {}, {"lr": 0.1}, now)
    c = ckpt(0, 4, created=now)
    store.add_checkpoint("e", c, version=4, keep=3, now=now)
    store.record_exploit("e", Event(0, 6, 1, 5, {"lr": 0.1}, {"lr": 0.3}, now + 1))
    back = store.rollback("e", 0, store.checkpoints("e", 0)[0])
    assert (back.step, back.hparams, back.last_score) == (4, {"lr": 0.5}, 0.4)
    assert back.version == back.ckpt_version
    assert [r.step for r in store.reports("e") if r.member == 0] == [1, 2, 3, 4]
    assert store.events("e") == []
    fresh = store.rollback("e", 0, None)
    assert (fresh.step, fresh.hparams) == (0, {"lr": 0.1})
    assert [r for r in store.reports("e") if r.member == 0] == []


def test_checkpoint_current_only_if_member_unchanged(storage):
    store = make(storage)
    now = time.time()
    store.report("e", 0, 1, 0.1, {}, {}, now)
    assert store.add_checkpoint("e", ckpt(0, 1), version=1, keep=3, now=now) == []
    assert store.member("e", 0).ckpt_version == 1
    store.report("e", 0, 2, 0.2, {}, {}, now)
    store.add_checkpoint("e", ckpt(0, 2), version=1, keep=3, now=now)  # stale version: recorded, not current
    assert store.member("e", 0).ckpt_version == 1
    assert [c.step for c in store.checkpoints("e", 0)] == [2, 1]


def test_old_checkpoints_are_collected_unless_pinned(storage):
    store = make(storage)
    now = time.time()
    for step in (1, 2, 3):
        assert store.add_checkpoint("e", ckpt(0, step), version=0, keep=2, now=now) == (["k0-1"] if step == 3 else [])
    store.pin_checkpoint("e", 0, until=now + 60, at_step=2)
    assert store.add_checkpoint("e", ckpt(0, 4), version=0, keep=2, now=now) == []  # step 2 is pinned
    assert [c.step for c in store.checkpoints("e", 0)] == [4, 3, 2]
    assert sorted(store.add_checkpoint("e", ckpt(0, 5), version=0, keep=2, now=now + 61)) == ["k0-2", "k0-3"]


def test_pinned_checkpoint_is_never_deleted(storage):
    store = make(storage)
    now = time.time()
    store.add_checkpoint("e", ckpt(0, 1), version=0, keep=3, now=now)
    store.add_checkpoint("e", ckpt(0, 2), version=0, keep=3, now=now)
    pinned = store.pin_checkpoint("e", 0, until=now + 60, at_step=1)
    first = pinned.seq
    assert pinned.step == 1
    assert store.delete_checkpoint("e", 0, first, now) is False
    assert store.delete_checkpoint("e", 0, first, now + 61) is True
    assert [c.step for c in store.checkpoints("e", 0)] == [2]
    assert store.pin_checkpoint("e", 0, now, skip=(first + 1,)) is None


def test_failures_count_then_fail(storage):
    store = make(storage)
    assert store.record_failure("e", 0, "boom", max_failures=1) == "active"
    assert store.record_failure("e", 0, "boom again", max_failures=1) == "failed"
    m = store.member("e", 0)
    assert (m.status, m.failures, m.error) == ("failed", 2, "boom again")
    assert 0 not in store.recent_scores("e", 1)


def test_finish_and_progress(storage):
    store = make(storage)
    now = time.time()
    store.report("e", 0, 10, 0.9, {}, {}, now)
    store.report("e", 1, 3, 0.95, {}, {}, now)
    store.finish("e", 0)
    p = store.progress("e", "max")
    assert (p.done, p.active, p.steps_done, p.steps_total) == (1, 2, 13, 30)
    assert (p.best_member, p.best_score) == (1, 0.95)
    assert store.progress("e", "min").best_member == 0
