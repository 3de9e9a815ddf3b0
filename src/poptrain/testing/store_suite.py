"""The conformance suite every population store must pass, importable by stores written elsewhere.

Use it as a base class in a test module and give it a `storage` fixture; override `open` when
your store is not opened by `poptrain.store.open_store`:

    import pytest
    from poptrain.testing import StoreSuite

    class TestMyStore(StoreSuite):
        @pytest.fixture
        def storage(self, tmp_path):
            return f"mystore://{tmp_path}/db"  # a fresh, empty location for each test

        def open(self, storage):
            return MyStore(storage)  # a new store object on that location, as another process would open it

Each test gets a fresh `storage` and may open it more than once: every store object opened on it
must see the others' writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import pytest

from ..errors import StorageError
from ..store import CheckpointRecord, Event, LeaseLost, MemberRecord, Store, open_store

SPEC = {"name": "e", "steps": 10, "mode": "max"}
ENDED = -1.0  # a lease that ended a second ago on the store's clock: expiry without waiting for it
HOUR = 3600.0


def make_experiment(store: Store, n: int = 3, held: bool = True) -> Store:
    """Create experiment 'e' of n members in `store`; with `held`, member i is leased to worker 'w{i}'."""
    store.create_experiment("e", SPEC, [MemberRecord(id=i, seed=i, hparams={"lr": 0.1 * (i + 1)},
                                                     initial_hparams={"lr": 0.1 * (i + 1)}) for i in range(n)])
    if held:
        for i in range(n):
            claimed = store.claim("e", w(i), 60, time.time(), barrier=False)
            assert claimed is not None and claimed.id == i
    return store


def take_over(store: Store, worker: str = "batch") -> list[MemberRecord]:
    """Lease every member to `worker`, as when the leases of the workers holding them have ended."""
    for m in store.members("e"):
        if m.worker is not None:
            store.expire_worker("e", m.worker)
    return store.claim_all("e", worker, 60, time.time())


def scores(store: Store, at_step: int | None = None) -> tuple[list[int], list[float | None]]:
    """The store's scores as plain lists, None for a missing score."""
    ids, values = store.scores("e", at_step)
    return ids.tolist(), [None if math.isnan(v) else v for v in values.tolist()]


def w(member: int) -> str:
    """The worker that `make_experiment` leases `member` to."""
    return f"w{member}"


def ckpt(member: int, step: int, created: float | None = None, hparams: dict[str, Any] | None = None,
         pending: bool = False) -> CheckpointRecord:
    """A checkpoint record of `member` at `step` (key 'k{member}-{step}', 'k{member}-{step}p' if pending)."""
    return CheckpointRecord(member=member, seq=0, step=step, key=f"k{member}-{step}{'p' if pending else ''}", checksum="x",
                            hparams=hparams or {"lr": 0.5}, last_ready=step, pending=pending,
                            created=created if created is not None else time.time())


def add(store: Store, c: CheckpointRecord, version: int = 0, keep: int = 3, now: float | None = None) -> list[str]:
    """Record checkpoint `c` as its member's worker; the keys the store says to delete."""
    return store.add_checkpoint("e", c, version, keep, time.time() if now is None else now, w(c.member))


class StoreSuite:
    """The store conformance tests; subclass it as `Test...` and supply a `storage` fixture (see the module).

    The fixture may live on the subclass or in a conftest.py; each test calls it for a fresh location.
    """

    def open(self, storage: Any) -> Store:
        """A new store object on `storage` (override it for a store that open_store does not know)."""
        return open_store(storage)

    def make(self, storage: Any, n: int = 3, held: bool = True) -> Store:
        """Open `storage` and create experiment 'e' of n members in it (see `make_experiment`)."""
        return make_experiment(self.open(storage), n, held)

    def test_spec_round_trip_and_missing_experiment(self, storage):
        store = self.make(storage)
        assert store.get_spec("e") == SPEC
        assert store.experiments() == ["e"]
        with pytest.raises(StorageError, match="no experiment 'nope'.*holds: e"):
            store.get_spec("nope")
        with pytest.raises(StorageError, match="already exists"):
            store.create_experiment("e", SPEC, [])


    def test_claim_prefers_lowest_step_then_own_member(self, storage):
        store = self.make(storage, held=False)
        now = time.time()
        assert store.claim("e", "w1", 10, now, barrier=False).id == 0
        store.report("e", 0, "w1", 1, 0.5, {"score": 0.5}, {"lr": 0.1}, now)
        assert store.claim("e", "w2", 10, now, barrier=False).id == 1  # member 0 is leased by w1, and is ahead
        assert store.claim("e", "w1", 10, now, barrier=False).id == 2  # lowest step first, even before its own 0
        store.report("e", 2, "w1", 1, 0.1, {}, {"lr": 0.3}, now)
        assert store.claim("e", "w1", 10, now, barrier=False).id == 0  # its own first among equal steps
        assert store.claim("e", "w3", 10, now, barrier=False, take_new=False) is None  # holds nothing


    def test_leases_exclude_other_workers_until_expiry(self, storage):
        store = self.make(storage, n=1, held=False)
        now = time.time()
        assert store.claim("e", "a", 5, now, barrier=False).id == 0
        assert store.claim("e", "b", 5, now, barrier=False) is None
        store.renew("e", "a", ENDED, now)
        store.renew("e", "a", 5, now)  # renewed before another worker took it
        assert store.claim("e", "b", 5, now, barrier=False) is None
        store.renew("e", "a", ENDED, now)
        assert store.claim("e", "b", 5, now, barrier=False).id == 0  # a's lease expired
        assert store.expire_worker("e", "b") == 1
        assert store.claim("e", "c", 5, now, barrier=False).worker == "c"  # b's lease ended at once

    def test_leases_are_measured_on_the_stores_clock_not_the_callers(self, storage):
        store = self.make(storage, n=2, held=False)
        assert store.claim("e", "a", 5, time.time(), barrier=False).id == 0
        # a caller whose clock is an hour ahead neither takes a's live lease nor keeps its own past its end
        assert store.claim("e", "ahead", 5, time.time() + HOUR, barrier=False).id == 1
        store.renew("e", "ahead", 5, time.time() + HOUR)
        assert store.member("e", 1).lease_until <= store.clock() + 5
        assert store.claim("e", "ahead", 5, time.time() + HOUR, barrier=False).id == 1  # its own, not a's
        # one an hour behind does not see an ended lease as live, and its own lease is not over at once
        store.renew("e", "a", ENDED, time.time())
        assert store.claim("e", "behind", 5, time.time() - HOUR, barrier=False).id == 0
        assert store.member("e", 0).lease_until > store.clock()
        assert store.claim("e", "a", 5, time.time(), barrier=False) is None


    def test_a_write_repeated_after_its_answer_was_lost_is_recorded_once(self, storage):
        """A connection cut during COMMIT leaves the writer unsure whether it happened: it writes again."""
        store = self.make(storage)
        now = time.time()
        for _ in range(2):
            store.report("e", 0, w(0), 1, 0.5, {}, {"lr": 0.1}, now)
            assert add(store, ckpt(0, 1), version=1) == []
        assert [(r.step, r.score) for r in store.reports("e")] == [(1, 0.5)]
        m = store.member("e", 0)
        assert (m.step, m.version, m.ckpt_version) == (1, 1, 1)  # the checkpoint is current: one change, not two
        assert [c.seq for c in store.checkpoints("e", 0)] == [1]
        store.report("e", 0, w(0), 1, 0.7, {}, {"lr": 0.1}, now + 1)  # a new report of the step replaces it
        assert [(r.step, r.score) for r in store.reports("e")] == [(1, 0.7)]
        for _ in range(2):
            store.finish("e", 0, w(0))
        assert store.member("e", 0).status == "done"

    def test_writes_by_a_worker_that_lost_its_lease_change_nothing(self, storage):
        store = self.make(storage, n=1, held=False)
        now = time.time()
        store.claim("e", "a", ENDED, now, barrier=False)
        store.claim("e", "b", 5, now, barrier=False)  # a's lease expired; b took the member
        before = store.member("e", 0)
        with pytest.raises(LeaseLost):
            store.report("e", 0, "a", 1, 0.9, {}, {}, now + 11)
        with pytest.raises(LeaseLost):
            store.finish("e", 0, "a")
        with pytest.raises(LeaseLost):
            store.record_exploit("e", Event(0, 1, 0, 1, {}, {"lr": 9.0}, now), "a")
        with pytest.raises(LeaseLost):
            store.add_checkpoint("e", ckpt(0, 1), 0, 3, now, "a")
        with pytest.raises(LeaseLost):
            store.record_failure("e", 0, "a", "boom", 3)
        with pytest.raises(LeaseLost):
            store.rollback("e", 0, "a", None)
        assert store.member("e", 0) == before
        assert store.reports("e") == [] and store.events("e") == [] and store.checkpoints("e", 0) == []


    def test_barrier_holds_pending_member_until_everyone_reaches_its_step(self, storage):
        store = self.make(storage, n=2)
        now = time.time()
        for step in (1, 2):
            store.report("e", 0, w(0), step, 1.0, {}, {"lr": 0.1}, now)
        add(store, ckpt(0, 2, pending=True), version=2)
        assert store.member("e", 0).pending and store.member("e", 0).last_ready == 2
        store.release("e", 0, w(0))
        store.report("e", 1, w(1), 1, 1.0, {}, {"lr": 0.2}, now)
        store.release("e", 1, w(1))
        assert store.claim("e", "x", 5, now, barrier=True).id == 1
        store.report("e", 1, "x", 2, 1.0, {}, {"lr": 0.2}, now)
        store.release("e", 1, "x")
        assert store.claim("e", "x", 5, now, barrier=True).id == 0  # everyone is at step 2 now
        store.mark_ready("e", 0, "x", 2)
        assert not store.member("e", 0).pending


    def test_reports_versions_and_recent_scores(self, storage):
        store = self.make(storage)
        now = time.time()
        for step, score in enumerate([0.1, 0.2, float("nan"), 0.4], start=1):
            store.report("e", 0, w(0), step, score, {"acc": score}, {"lr": 0.1}, now)
        m = store.member("e", 0)
        assert (m.step, m.version, m.last_score) == (4, 4, 0.4)
        assert store.recent_scores("e", 3) == {0: [0.2, None, 0.4]}
        assert store.recent_scores("e", 1) == {0: [0.4]}
        assert store.recent_scores("e", 2, at_step=2) == {0: [0.1, 0.2]}
        reports = store.reports("e")
        assert [r.step for r in reports] == [1, 2, 3, 4]
        store.report("e", 1, w(1), 1, 0.7, {"acc": 0.7}, {"lr": 0.2}, now)
        recent = store.recent_reports("e", 2)  # each member's last 2 reports, by member then step
        assert [(r.member, r.step, r.hparams) for r in recent] == [(0, 3, {"lr": 0.1}), (0, 4, {"lr": 0.1}),
                                                                   (1, 1, {"lr": 0.2})]
        assert recent[1].metrics == {"acc": 0.4} and recent[0].score is None
        assert [(r.member, r.step) for r in store.recent_reports("e", 1, at_step=2)] == [(0, 2)]
        store.record_failure("e", 1, w(1), "boom", max_failures=0)
        assert {r.member for r in store.recent_reports("e", 5)} == {0}  # a failed member's reports are not read
        assert reports[2].score is None and math.isnan(reports[2].metrics["acc"])
        assert [(r.member, r.step) for r in store.reports("e", members={1})] == [(1, 1)]  # only the members asked for
        assert [r.member for r in store.reports("e", members=[1, 0])] == [0, 0, 0, 0, 1]
        assert store.reports("e", members=set()) == []
        # thinned: multiples of 3, each member's first step and its newest (member 0 is at step 4)
        assert [(r.member, r.step) for r in store.reports("e", every=3)] == [(0, 1), (0, 3), (0, 4), (1, 1)]
        assert [(r.member, r.step) for r in store.reports("e", members=[0], every=2)] == [(0, 1), (0, 2), (0, 4)]


    def test_reports_after_each_members_step_bring_only_the_newer_ones(self, storage):
        store = self.make(storage)
        now = time.time()
        for step in (1, 2, 3):
            store.report("e", 0, w(0), step, step / 10, {}, {"lr": 0.1}, now)
        store.report("e", 1, w(1), 1, 0.5, {}, {"lr": 0.2}, now)
        assert [(r.member, r.step) for r in store.reports_after("e", {})] == [(0, 1), (0, 2), (0, 3), (1, 1)]
        assert [(r.member, r.step, r.score) for r in store.reports_after("e", {0: 2, 1: 1})] == [(0, 3, 0.3)]
        store.report("e", 1, w(1), 2, 0.6, {}, {"lr": 0.2}, now)
        store.report("e", 2, w(2), 1, 0.7, {}, {"lr": 0.3}, now)  # a member the reader never saw: all of it
        newer = store.reports_after("e", {0: 3, 1: 1})
        assert [(r.member, r.step, r.hparams) for r in newer] == [(1, 2, {"lr": 0.2}), (2, 1, {"lr": 0.3})]
        assert store.reports_after("e", {0: 3, 1: 2, 2: 1}) == []

    def test_report_many_records_a_step_of_every_member(self, storage):
        store = self.make(storage)
        now = time.time()
        take_over(store)
        store.report_many("e", "batch", 1, [(0, 0.1, {"acc": 0.1}, {"lr": 0.1}), (1, float("nan"), {}, {"lr": 0.2}),
                                            (2, 0.3, {}, {"lr": 0.3})], now)
        store.report_many("e", "batch", 1, [(m, 0.5 + m, {}, {"lr": 0.9}) for m in range(3)], now + 1)  # a retry replaces
        assert [(r.member, r.step, r.score, r.hparams, r.time) for r in store.reports("e")] == \
            [(m, 1, 0.5 + m, {"lr": 0.9}, now + 1) for m in range(3)]
        assert [(m.step, m.version, m.last_score, m.hparams) for m in store.members("e")] == \
            [(1, 2, 0.5 + m, {"lr": 0.9}) for m in range(3)]
        store.report_many("e", "batch", 2, [(0, float("nan"), {}, {"lr": 0.9})], now + 2)
        assert scores(store) == ([0, 1, 2], [None, 1.5, 2.5])


    def test_report_many_keeps_the_last_row_of_a_member_given_twice(self, storage):
        store = self.make(storage)
        now = time.time()
        take_over(store)
        store.report_many("e", "batch", 1, [(0, 0.1, {}, {"lr": 0.1}), (0, 0.2, {}, {"lr": 0.2})], now)  # as report() twice
        assert [(r.member, r.score, r.hparams) for r in store.reports("e")] == [(0, 0.2, {"lr": 0.2})]
        assert (store.member("e", 0).last_score, store.member("e", 0).version) == (0.2, 2)


    def test_report_many_writes_nothing_unless_every_member_is_held(self, storage):
        store = self.make(storage)
        now = time.time()
        take_over(store)
        store.release("e", 1, "batch")
        before = store.members("e")
        with pytest.raises(LeaseLost, match="member 1 "):
            store.report_many("e", "batch", 1, [(m, 0.5, {}, {"lr": 0.9}) for m in range(3)], now)
        assert store.reports("e") == [] and store.members("e") == before
        assert scores(store) == ([], [])


    def test_scores_read_one_row_per_member_in_id_order(self, storage):
        store = self.make(storage, n=4)
        now = time.time()
        for member, history in ((2, [0.5, 0.7]), (0, [0.3]), (3, [0.9, float("nan")])):
            for step, score in enumerate(history, start=1):
                store.report("e", member, w(member), step, score, {}, {"lr": 0.1}, now)
        assert scores(store) == ([0, 2, 3], [0.3, 0.7, None])  # member 1 has no score yet
        assert scores(store, at_step=1) == ([0, 2, 3], [0.3, 0.5, 0.9])
        assert scores(store, at_step=2) == ([2, 3], [0.7, None])
        assert store.recent_scores("e", 2, members=[2]) == {2: [0.5, 0.7]}
        store.record_failure("e", 2, w(2), "boom", max_failures=0)
        assert scores(store) == ([0, 3], [0.3, None])
        store.report("e", 1, w(1), 1, 0.1, {}, {"lr": 0.1}, now)
        store.report("e", 0, w(0), 2, 0.6, {}, {"lr": 0.1}, now)
        assert scores(store) == ([0, 1, 3], [0.6, 0.1, None])
        store.rollback("e", 0, w(0), ckpt(0, 1))
        assert scores(store) == ([0, 1, 3], [0.3, 0.1, None])


    def test_scores_see_every_other_writers_change(self, storage):
        """A reader's scores stay current while other store objects (other processes) write."""
        reader, writer = self.make(storage, n=5), self.open(storage)
        now = time.time()
        for step in range(1, 4):
            for member in range(5):
                writer.report("e", member, w(member), step, step + member / 10, {}, {"lr": 0.1}, now)
                assert scores(reader)[1][member] == step + member / 10
        writer.record_failure("e", 4, w(4), "boom", max_failures=0)
        assert scores(reader)[0] == [0, 1, 2, 3]


    def test_exploit_event_changes_hparams_and_lineage(self, storage):
        store = self.make(storage)
        ev = Event(member=1, step=4, source=0, source_step=4, old_hparams={"lr": 0.2}, new_hparams={"lr": 0.12},
                   time=time.time())
        store.record_exploit("e", ev, w(1))
        assert store.member("e", 1).hparams == {"lr": 0.12}
        assert store.events("e") == [ev]
        assert store.progress("e", "max").exploits == 1
        store.record_exploit("e", ev, w(1))  # a retried write records it once
        assert store.events("e") == [ev] and store.member("e", 1).version == 1


    def test_events_after_an_id_miss_none_when_a_rollback_deletes_the_newest(self, storage):
        store = self.make(storage)
        now = time.time()
        for step in range(1, 5):
            store.report("e", 0, w(0), step, step / 10, {}, {"lr": 0.1}, now)
        add(store, ckpt(0, 2), version=2)
        first = Event(1, 2, 0, 2, {"lr": 0.2}, {"lr": 0.3}, now)
        late = Event(0, 4, 1, 2, {"lr": 0.1}, {"lr": 0.4}, now + 1)
        store.record_exploit("e", first, w(1))
        store.record_exploit("e", late, w(0))
        seen = store.events("e")
        ids = [ev.id for ev in seen]
        assert seen == [first, late] and all(isinstance(i, int) for i in ids) and ids[0] < ids[1]
        assert store.events("e", after=ids[0]) == [late] and store.events("e", after=ids[1]) == []
        store.rollback("e", 0, w(0), store.checkpoints("e", 0)[0])  # a takeover after a crash deletes `late`
        again = Event(0, 4, 2, 4, {"lr": 0.5}, {"lr": 0.6}, now + 2)
        store.record_exploit("e", again, w(0))
        newer = store.events("e", after=ids[1])  # after the deleted id: the new event is above it
        assert newer == [again] and newer[0].id > ids[1]
        assert store.events("e") == [first, again] and store.events("e")[0].id == ids[0]
        assert [ev.id for ev in self.open(storage).events("e")] == [ids[0], newer[0].id]  # the same to every reader


    def test_record_exploits_is_one_all_or_nothing_write(self, storage):
        store = self.make(storage)
        now = time.time()
        both = [Event(member=m, step=4, source=2, source_step=4, old_hparams={"lr": 0.1}, new_hparams={"lr": 0.3 + m},
                      time=now) for m in (0, 1)]
        with pytest.raises(LeaseLost, match="member 1 "):
            store.record_exploits("e", [both[0], replace(both[1], member=1, time=now + 1)], w(0))  # w0 does not hold 1
        assert store.events("e") == [] and store.member("e", 0).hparams == {"lr": 0.1}
        take_over(store)
        store.record_exploits("e", [both[0], *both], "batch")  # an event twice in one batch counts once
        store.record_exploits("e", both, "batch")  # a retried write records nothing more
        assert store.events("e") == both
        assert [(m.hparams, m.version) for m in store.members("e")[:2]] == [({"lr": 0.3}, 1), ({"lr": 1.3}, 1)]


    def test_rollback_drops_work_after_the_checkpoint(self, storage):
        store = self.make(storage)
        now = time.time()
        for step in range(1, 7):
            store.report("e", 0, w(0), step, step / 10, {}, {"lr": 0.1}, now)
        add(store, ckpt(0, 4, created=now), version=4)
        store.record_exploit("e", Event(0, 6, 1, 5, {"lr": 0.1}, {"lr": 0.3}, now + 1), w(0))
        back = store.rollback("e", 0, w(0), store.checkpoints("e", 0)[0])
        assert (back.step, back.hparams, back.last_score) == (4, {"lr": 0.5}, 0.4)
        assert back.version == back.ckpt_version
        assert [r.step for r in store.reports("e") if r.member == 0] == [1, 2, 3, 4]
        assert store.events("e") == []
        fresh = store.rollback("e", 0, w(0), None)
        assert (fresh.step, fresh.hparams) == (0, {"lr": 0.1})
        assert [r for r in store.reports("e") if r.member == 0] == []


    @pytest.mark.parametrize("pending", [True, False])
    def test_rollback_keeps_the_decision_a_checkpoint_includes(self, storage, pending):
        store = self.make(storage)
        now = time.time()
        for step in range(1, 5):
            store.report("e", 0, w(0), step, 0.1, {}, {"lr": 0.1}, now)
        add(store, ckpt(0, 4, pending=pending), version=4)
        store.record_exploit("e", Event(0, 4, 1, 4, {"lr": 0.1}, {"lr": 0.3}, now - 100), w(0))  # clocks may lie
        back = store.rollback("e", 0, w(0), store.checkpoints("e", 0)[0])
        # a pending checkpoint was written before the decision at its step; any other one after it
        assert len(store.events("e")) == (0 if pending else 1)
        assert back.pending is pending and back.step == 4


    def test_add_checkpoints_records_a_population_at_once_or_not_at_all(self, storage):
        store = self.make(storage)
        records = [(ckpt(m, 0), 0) for m in (0, 1)]
        with pytest.raises(LeaseLost, match="member 1 "):
            store.add_checkpoints("e", records, 3, time.time(), w(0))  # w0 does not hold member 1
        assert store.checkpoints("e", 0) == [] and store.checkpoints("e", 1) == []
        take_over(store)
        for step in range(1, 4):
            dropped = store.add_checkpoints("e", [(ckpt(m, step), 0) for m in (0, 1)], 2, time.time(), "batch")
            assert dropped == ([] if step < 3 else ["k0-1", "k1-1"])
        assert [[c.step for c in store.checkpoints("e", m)] for m in (0, 1)] == [[3, 2], [3, 2]]


    def test_checkpoint_current_only_if_member_unchanged(self, storage):
        store = self.make(storage)
        now = time.time()
        store.report("e", 0, w(0), 1, 0.1, {}, {}, now)
        assert add(store, ckpt(0, 1), version=1) == []
        assert store.member("e", 0).ckpt_version == 1
        store.report("e", 0, w(0), 2, 0.2, {}, {}, now)
        add(store, ckpt(0, 2), version=1)  # stale version: recorded, not current
        assert store.member("e", 0).ckpt_version == 1
        assert [c.step for c in store.checkpoints("e", 0)] == [2, 1]


    def test_old_checkpoints_are_collected_unless_pinned(self, storage):
        store = self.make(storage)
        for step in (1, 2, 3):
            assert add(store, ckpt(0, step), keep=2) == (["k0-1"] if step == 3 else [])
        store.pin_checkpoint("e", 0, until=time.time() + 60, at_step=2)
        assert add(store, ckpt(0, 4), keep=2, now=time.time() + HOUR) == []  # step 2 is pinned, whatever the caller's clock
        assert [c.step for c in store.checkpoints("e", 0)] == [4, 3, 2]
        store.pin_checkpoint("e", 0, until=time.time() + ENDED, at_step=3)  # a pin that has ended
        assert add(store, ckpt(0, 5), keep=2) == ["k0-3"]
        pinned = store.pin_checkpoint("e", 0, until=time.time() + 60, at_step=2)
        assert pinned.step == 2 and 0 < pinned.pinned_until - store.clock() <= 60  # its end, on the store's clock
        store.unpin_checkpoint("e", 0, pinned.seq, pinned.pinned_until)  # the newest pin's end: it ends now
        assert sorted(add(store, ckpt(0, 6), keep=2)) == ["k0-2", "k0-4"]


    def test_pinned_checkpoint_is_never_deleted(self, storage):
        store = self.make(storage)
        now = time.time()
        add(store, ckpt(0, 1, pending=True))
        add(store, ckpt(0, 1))
        add(store, ckpt(0, 2))
        pinned = store.pin_checkpoint("e", 0, until=now + 60, at_step=1)
        assert (pinned.step, pinned.pending) == (1, False)
        assert store.delete_checkpoint("e", 0, pinned.seq, math.inf) is False
        later = store.pin_checkpoint("e", 0, until=now + 90, at_step=1)  # a second reader extends the pin
        store.unpin_checkpoint("e", 0, pinned.seq, pinned.pinned_until)  # the first reader's unpin leaves it pinned
        assert store.delete_checkpoint("e", 0, pinned.seq, math.inf) is False
        store.unpin_checkpoint("e", 0, later.seq, later.pinned_until)
        assert store.delete_checkpoint("e", 0, pinned.seq, math.inf) is True
        assert [c.step for c in store.checkpoints("e", 0)] == [2, 1]
        assert store.pin_checkpoint("e", 0, now, pending=True).seq == 1
        assert store.pin_checkpoint("e", 0, now, skip=(1, 3)) is None


    def test_failures_count_then_fail(self, storage):
        store = self.make(storage)
        assert store.record_failure("e", 0, w(0), "boom", max_failures=1) == "active"
        assert store.member("e", 0).worker is None  # released: any worker retries it
        store.claim("e", w(0), 60, time.time(), barrier=False)
        assert store.record_failure("e", 0, w(0), "boom again", max_failures=1) == "failed"
        m = store.member("e", 0)
        assert (m.status, m.failures, m.error) == ("failed", 2, "boom again")
        assert 0 not in store.recent_scores("e", 1)


    def test_one_run_holds_an_experiment_at_a_time(self, storage):
        store = self.make(storage, held=False)
        now = time.time()
        assert store.hold_run("e", "a", 10.0, now) is None
        assert store.hold_run("e", "a", 10.0, now) is None  # a renewal
        assert store.hold_run("e", "b", 10.0, now) == "a"
        assert store.hold_run("e", "b", 10.0, now, force=True) is None
        store.release_run("e", "a")  # no longer a's: nothing happens
        assert store.hold_run("e", "c", 10.0, now) == "b"
        store.release_run("e", "b")
        assert store.hold_run("e", "c", ENDED, now) is None
        assert store.hold_run("e", "d", 10.0, now) is None  # c's hold has expired
        assert store.hold_run("e", "c", 10.0, now + HOUR) == "d"  # a clock an hour ahead does not end d's hold

    def test_finish_and_progress(self, storage):
        store = self.make(storage)
        now = time.time()
        store.report("e", 0, w(0), 10, 0.9, {}, {}, now)
        store.report("e", 1, w(1), 3, 0.95, {}, {}, now)
        store.finish("e", 0, w(0))
        p = store.progress("e", "max")
        assert (p.done, p.active, p.steps_done, p.steps_total) == (1, 2, 13, 30)
        assert (p.best_member, p.best_score) == (1, 0.95)
        assert store.progress("e", "min").best_member == 0


    def test_metrics_must_be_json(self, storage):
        store = self.make(storage)
        with pytest.raises(TypeError):
            store.report("e", 0, w(0), 1, 0.5, {"hist": object()}, {}, time.time())
        assert store.reports("e") == []
