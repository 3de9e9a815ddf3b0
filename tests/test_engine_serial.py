"""The worker loop on the serial engine: determinism, failures, NaN scores, corrupt checkpoints."""

from __future__ import annotations

import logging
import time
import uuid

import pandas as pd
import pytest

import poptrain
from poptrain.engines.worker import Worker
from poptrain.store import CheckpointStore, open_store
from conftest import EXAMPLES
from poptrain.experiment import load_spec
from trainables import AlwaysRaises, BadSetHparams, BadState, ListMetric, NanScore, Quadratic, RaisesOnce, TensorScore

SPACE = {"lr": poptrain.LogUniform(0.001, 0.5)}


def experiment(storage: str, **kw) -> poptrain.Experiment:
    base = dict(name="q", trainable=Quadratic, space=SPACE, metric="score", population=6, steps=12,
                ready=poptrain.Every(3), storage=storage, seed=7)
    return poptrain.Experiment(**{**base, **kw})


def test_same_seed_same_run(storage, tmp_path):
    first = experiment(storage).run(engine="serial")
    second = experiment(f"sqlite:///{tmp_path}/again.db").run(engine="serial")
    frame = lambda r: r.frame().drop(columns="time")  # noqa: E731
    pd.testing.assert_frame_equal(frame(first), frame(second))
    strip = lambda r: [(e.member, e.step, e.source, e.new_hparams) for e in r.events()]  # noqa: E731
    assert strip(first) == strip(second) and len(strip(first)) > 0
    other = experiment(f"sqlite:///{tmp_path}/other.db", seed=8).run(engine="serial")
    assert not frame(other).equals(frame(first))


def test_every_member_reaches_budget_and_lineage_is_recorded(storage):
    result = experiment(storage).run(engine="serial")
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {12}
    frame = result.frame()
    assert sorted(frame.groupby("member").step.apply(list).iloc[0]) == list(range(1, 13))
    events = result.events()
    assert events and all(e.step % 3 == 0 for e in events)
    ev = events[-1]
    lineage = result.lineage(ev.member)
    assert lineage.iloc[-1].source == ev.source and lineage.iloc[-1].step == ev.step
    schedule = result.schedule(ev.member)
    assert schedule.loc[schedule.step == ev.step + 1, "lr"].item() == pytest.approx(ev.new_hparams["lr"])
    best = result.best()
    assert best.score == max(members.score) and best.checkpoint is not None
    assert best.load_state()["trained"] > 0


def test_synchronous_generations_decide_at_the_same_step(storage):
    result = experiment(storage, synchronous=True).run(engine="serial")
    assert set(result.members().step) == {12}
    reports = {(r.member, r.step): r.time for r in result.store.reports("q")}
    for ev in result.events():
        # a decision at step t happens only once every member has reported step t
        assert all(reports[(m, ev.step)] <= ev.time for m in range(6))


def test_trainable_that_raises_is_retried_then_failed_and_run_continues(storage, caplog):
    space = {"lr": poptrain.LogUniform(0.001, 0.5), "bad": poptrain.Choice([0, 1])}
    initial = [{"lr": 0.1, "bad": 1}] + [{"lr": 0.1, "bad": 0}] * 3
    exp = experiment(storage, trainable=AlwaysRaises, space=space, population=4, initial=initial, max_failures=2,
                     exploit=None)
    with caplog.at_level(logging.WARNING, logger="poptrain"):
        result = exp.run(engine="serial")
    members = result.members().set_index("member")
    assert members.loc[0, "status"] == "failed" and members.loc[0, "failures"] == 3
    assert "CUDA out of memory" in result.store.member("q", 0).error
    assert (members.loc[1:, "status"] == "done").all() and (members.loc[1:, "step"] == 12).all()
    assert any("retrying from its last checkpoint" in r.message for r in caplog.records)


def test_transient_error_retries_from_checkpoint(storage):
    RaisesOnce.raised.clear()
    result = experiment(storage, trainable=RaisesOnce, population=3).run(engine="serial")
    members = result.members()
    assert set(members.status) == {"done"} and set(members.failures) == {1}
    # after the retry, each member resumed from its step-3 checkpoint: one report per step
    assert result.frame().groupby("member").step.apply(lambda s: sorted(s) == list(range(1, 13))).all()


def test_nan_scores_rank_worst_and_are_replaced(storage):
    initial = [{"lr": 0.45}, {"lr": 0.05}, {"lr": 0.1}, {"lr": 0.2}]
    exp = experiment(storage, trainable=NanScore, population=4, initial=initial,
                     explore=poptrain.Perturb(factors=(0.8,), resample_probability=0.0))
    result = exp.run(engine="serial")
    first = [e for e in result.events() if e.member == 0][0]
    assert first.step == 3 and first.source != 0
    assert all(e.source != 0 or e.step > 3 for e in result.events())
    assert result.store.member("q", 0).last_score is not None


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/s.db"
    exp = experiment(url, population=2, exploit=None, ready=poptrain.Every(3))
    exp.create()
    store = open_store(url)
    worker = Worker(store, "q", "doomed")
    while store.member("q", 0).step < 7:  # checkpoints at the ready points 3 and 6
        worker.advance(worker.connection.ask())
    ckpts = store.checkpoints("q", 0)
    assert [c.step for c in ckpts] == [6, 3]
    with open(CheckpointStore(exp.checkpoints).path(ckpts[0].key), "r+b") as f:
        f.truncate(20)
    store.expire_worker("q", "doomed")  # the worker 'dies'; its memory is gone
    with caplog.at_level(logging.WARNING, logger="poptrain"):
        Worker(store, "q", "rescuer").run()
    assert any("does not match its checksum" in r.message for r in caplog.records)
    reports = [r.step for r in store.reports("q") if r.member == 0]
    assert reports == list(range(1, 13))
    assert store.member("q", 0).status == "done"


def test_stored_experiment_with_other_spec_is_refused(storage):
    experiment(storage).create()
    with pytest.raises(poptrain.SpecError, match="already exists.*steps differ"):
        experiment(storage, steps=13).create()
    assert experiment(storage).create() is False  # the same spec resumes


def test_unknown_engine_is_refused(storage):
    with pytest.raises(poptrain.SpecError, match="unknown engine 'gpu'"):
        experiment(storage).run(engine="gpu")


@pytest.mark.parametrize("cls", [BadState, BadSetHparams, ListMetric])
def test_user_errors_anywhere_fail_the_member_not_the_run(storage, cls, caplog):
    initial = [{"lr": 0.45}, {"lr": 0.05}, {"lr": 0.1}, {"lr": 0.2}]
    exp = experiment(storage, trainable=cls, population=4, initial=initial, max_failures=1)
    with caplog.at_level(logging.WARNING, logger="poptrain"):
        result = exp.run(engine="serial")
    members = result.members()
    assert "failed" in set(members.status)
    assert set(members.status) <= {"failed", "done"}
    errors = " ".join(m.error or "" for m in result.store.members("q"))
    expected = {BadState: "pickle", BadSetHparams: "cannot change lr", ListMetric: "'history'"}[cls]
    assert expected in errors


def test_numpy_and_torch_scalars_are_scores(storage):
    result = experiment(storage, trainable=TensorScore, population=2).run(engine="serial")
    frame = result.frame()
    assert set(result.members().status) == {"done"}
    assert frame.score.notna().all() and (frame["metric.loss"] == -frame.score).all()
    assert set(frame["metric.note"]) == {"ok"}


def test_a_run_that_live_workers_hold_is_refused_unless_forced(storage):
    exp = experiment(storage)
    exp.create()
    open_store(storage).claim("q", "elsewhere", 600, time.time(), barrier=False)
    with pytest.raises(poptrain.PoptrainError, match="is being trained: 1 member.*elsewhere.*--force"):
        exp.run(engine="serial")
    assert set(exp.run(engine="serial", force=True).members().status) == {"done"}


def test_workers_share_the_population_evenly(storage):
    exp = experiment(storage, population=6, exploit=None)
    exp.create()
    store = open_store(storage)
    workers = [Worker(store, "q", f"w{i}", max_held=3) for i in range(2)]
    trained: dict[str, set[int]] = {w.id: set() for w in workers}
    for _ in range(40):
        for w in workers:
            member = w.connection.ask(wait=False)  # takes a new member only while it holds fewer than max_held
            if member is not None:
                trained[w.id].add(member.id)
                w.advance(member)
    assert [len(s) for s in trained.values()] == [3, 3]
    assert trained["w0"].isdisjoint(trained["w1"])


def test_synchronous_sources_are_copied_as_they_were_at_the_barrier():
    for seed in range(10):
        exp = load_spec(f"{EXAMPLES}/toy_quadratic.toml", seed=seed, steps=60, storage=f"memory://{uuid.uuid4().hex}")
        result = exp.run(engine="serial")
        by_key = {(e.member, e.step): e for e in result.events()}
        for e in by_key.values():
            assert e.source_step == e.step  # the source's checkpoint at the barrier, not an older one
        for m in range(2):
            steps = result.lineage(m).step.tolist()
            # each ancestor was copied before the exploit that follows it: the chain goes back in time
            assert steps == sorted(set(steps)), (seed, m, steps)


def test_specs_that_cannot_work_are_refused(storage):
    with pytest.raises(poptrain.SpecError, match="keep_checkpoints >= 3"):
        experiment(storage, synchronous=True, keep_checkpoints=2)
    with pytest.raises(poptrain.SpecError, match="'step'.*taken"):
        experiment(storage, space={"lr": poptrain.LogUniform(0.001, 0.5), "step": poptrain.IntUniform(1, 3)})
    with pytest.raises(poptrain.SpecError, match="name"):
        experiment(storage, name="../elsewhere")


def test_both_stores_hand_back_hparams_as_json(storage):
    space = {"lr": poptrain.LogUniform(0.001, 0.5), "betas": poptrain.Choice([(0.9, 0.99), (0.8, 0.9)])}
    exp = experiment(storage, space=space, steps=3)
    result = exp.run(engine="serial")
    assert experiment(storage, space=space, steps=3).create() is False  # the same spec, read back, is the same
    assert all(isinstance(m.hparams["betas"], list) for m in result.store.members("q"))
