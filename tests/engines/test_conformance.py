"""The engine conformance suite: what every engine must do, through the public API. A new engine is done when it passes.

Each case runs on every engine (`engines.helpers.ENGINES`); a case an engine cannot meet by its
nature is not generated for it (`helpers.NOT_APPLICABLE` gives the reason, so nothing is skipped),
and a known defect (`helpers.KNOWN_DEFECTS`) is a strict expected failure with the reason.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import poptrain
from checks import assert_consistent_lineage
from faults.helpers import Run, audit, steps_done, trained_steps, wait_until
from engines.helpers import (ENGINES, NOT_APPLICABLE, POPULATION, READY, STEPS, VARIANTS, Logs, Outcome, alive,
                             each_engine, has_workers, interrupt, resume_on, run_on, spec)

pytestmark = pytest.mark.slow


def test_the_suite_covers_every_engine():
    from poptrain.engines import ENGINES as shipped

    assert sorted({VARIANTS.get(e, (e,))[0] for e in ENGINES}) == sorted(shipped)
    # the worker-kill case is waived exactly for the engines without worker processes
    assert {e for e in ENGINES if not has_workers(e)} == {e for case, e in NOT_APPLICABLE if case == "worker_killed"}


@pytest.mark.parametrize("engine", each_engine("same_decisions"), indirect=True)
def test_same_decisions_and_reports_as_the_serial_engine(engine, tmp_path, reference):
    """For the same seeds and scores, every engine copies the same members at the same steps, to the same hparams."""
    result = run_on(spec(f"sqlite:///{tmp_path}/s.db"), engine)
    outcome = Outcome.of(result)
    assert outcome.decisions == reference.decisions
    assert outcome.reports == reference.reports
    assert outcome.hparams == reference.hparams
    assert_consistent_lineage(result, STEPS)  # every member done, one report a step, every source verifies


def variant(name: str) -> dict:
    """The suite's experiment with one of the strategies beyond the paper's (each reads history or metrics)."""
    from trainables import TracedObjectives

    return {"pb2": dict(explore=poptrain.PB2(candidates=64)),
            "fire": dict(exploit=poptrain.Fire(subpopulations=2, evaluators=1, history=4)),
            "pareto": dict(trainable=TracedObjectives,
                           exploit=poptrain.Pareto({"score": "max", "step_size": "min"}, 0.25))}[name]


VARIANT_REFERENCES: dict[str, Outcome] = {}


@pytest.mark.parametrize("name", ["pb2", "fire", "pareto"])
@pytest.mark.parametrize("engine", each_engine("same_decisions"), indirect=True)
def test_the_variant_strategies_make_the_same_decisions_as_on_the_serial_engine(engine, name, tmp_path):
    """PB2, FIRE and multi-objective PBT read what their strategies declare; every engine supplies it alike."""
    if name not in VARIANT_REFERENCES:
        VARIANT_REFERENCES[name] = Outcome.of(run_on(spec(f"sqlite:///{tmp_path}/r.db", **variant(name)), "serial"))
    reference = VARIANT_REFERENCES[name]
    assert reference.decisions, f"{name}: the reference run made no exploit"
    result = run_on(spec(f"sqlite:///{tmp_path}/v.db", **variant(name)), engine)
    assert Outcome.of(result) == reference
    assert_consistent_lineage(result, STEPS)


@pytest.mark.parametrize("engine", each_engine("worker_killed"), indirect=True)
def test_a_killed_worker_loses_and_duplicates_nothing(engine, tmp_path, logs: Logs, reference):
    """SIGKILL one worker process mid-run: the run finishes, every step reported once, the same decisions."""
    assert has_workers(engine)
    url = f"sqlite:///{tmp_path}/k.db"
    exp = spec(url)
    logs.clear()
    run = Run(lambda: run_on(exp, engine))
    wait_until(lambda: steps_done(url, "f") >= POPULATION * (READY + 2) or not run.alive(), "steps past a checkpoint")
    assert run.alive() and logs.worker_pids(), "the run ended before a worker could be killed"
    victim = logs.worker_pids()[-1]  # the worker that trained last
    os.kill(victim, signal.SIGKILL)
    killed_at = steps_done(url, "f")
    result = run.finish(120)
    assert killed_at < POPULATION * STEPS and not alive(victim)
    found = audit(result.store, "f", STEPS, result.spec["checkpoints"])
    found.assert_clean()  # every member at its budget; no report or decision lost or duplicated; checkpoints verify
    assert sum(m.failures for m in result.store.members("f")) <= 1  # at most the member it was training
    assert Outcome.of(result) == reference


@pytest.mark.parametrize("engine", each_engine("interrupted_resumed"), indirect=True)
def test_an_interrupted_run_resumes_with_no_step_reported_twice(engine, tmp_path, logs: Logs, reference):
    """Ctrl-C mid-run, then `poptrain.resume`: members restart at their last checkpoint, as if never interrupted."""
    url = f"sqlite:///{tmp_path}/i.db"
    exp = spec(url)
    logs.clear()
    # past the checkpoint at step 2 * READY and short of the next: members hold work newer than their checkpoints
    interrupt(lambda: run_on(exp, engine), lambda: steps_done(url, "f") >= POPULATION * (2 * READY + 1) + 1)
    wait_until(lambda: not any(alive(p) for p in logs.worker_pids()), "the interrupted run's workers to stop", 20)
    store = poptrain.load(url, "f").store
    at_stop = {m.id: m for m in store.members("f")}
    assert any(m.status == "active" for m in at_stop.values()), "the interrupt came after the run had finished"
    last_ckpt = {i: max((c.step for c in store.checkpoints("f", i)), default=0) for i in at_stop}
    first = len(logs.lines())

    result = resume_on(url, "f", engine)

    found = audit(result.store, "f", STEPS, result.spec["checkpoints"])
    found.assert_clean()  # every (member, step) reported exactly once, every member at its budget
    before, after = _split(logs, first, store)
    for i, m in at_stop.items():
        assert before[i] == list(range(1, len(before[i]) + 1)), (i, before[i])  # trained each step once, in order
        expect = [] if m.status == "done" else list(range(last_ckpt[i] + 1, STEPS + 1))
        assert after[i] == expect, (i, last_ckpt[i], after[i])  # the resume redoes only the work after it
    assert Outcome.of(result) == reference


def _split(logs: Logs, first: int, store) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """The steps each member trained before the interrupt (the log's first `first` lines) and after it."""
    lines = logs.lines()
    parts = []
    for chunk in (lines[:first], lines[first:]):
        path = logs.trained.with_suffix(f".{len(parts)}")
        path.write_text("".join(f"{line}\n" for line in chunk))
        parts.append(trained_steps(path, store, "f"))
    return parts[0], parts[1]


@pytest.mark.parametrize("engine", each_engine("raising_trainable"), indirect=True)
def test_a_raising_trainable_is_retried_then_failed(engine, tmp_path):
    """A trainable that always raises is retried `max_failures` times, then failed with its error; the run ends."""
    from trainables import TracedRaises

    space = {"lr": poptrain.LogUniform(0.01, 0.3), "bad": poptrain.Choice([0, 1])}
    initial = [{"lr": 0.1, "bad": 1}] + [{"lr": 0.1, "bad": 0}] * (POPULATION - 1)
    exp = spec(f"sqlite:///{tmp_path}/r.db", trainable=TracedRaises, space=space, initial=initial, max_failures=2,
               exploit=None)
    started = time.monotonic()
    result = run_on(exp, engine)
    members = {m.id: m for m in result.store.members("f")}
    failed = [0] if engine not in ("vectorized", "sharded") else list(members)  # one batched step holds them all
    for i, m in members.items():
        if i in failed:
            assert (m.status, m.failures) == ("failed", 3), (i, m)
            assert "CUDA out of memory (simulated)" in (m.error or "")
        else:
            assert (m.status, m.step) == ("done", STEPS), (i, m)
            assert sorted(r.step for r in result.store.reports("f") if r.member == i) == list(range(1, STEPS + 1))
    assert time.monotonic() - started < 60
