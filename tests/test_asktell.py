"""Ask/tell: ordinary training loops in separate processes form one population through a shared store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import poptrain
from poptrain.store import open_store
from conftest import ROOT

pytestmark = pytest.mark.slow

POPULATION, STEPS = 4, 24

# One process: an ordinary PyTorch loop, no Trainable. It logs its weights after every ready point
# and, at each exploit, the weights and learning rate it holds right after applying the copy.
LOOP = '''
import json, sys, time
import torch
import poptrain

url, log = sys.argv[1], sys.argv[2]
x = torch.linspace(-1, 1, 64).unsqueeze(1)
y = 3 * x - 1

def note(**entry):
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\\n")

pop = poptrain.connect(url, "own")
while (member := pop.ask()) is not None:
    torch.manual_seed(member.seed)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=member.hparams["lr"], momentum=0.9)
    if member.state is not None:
        model.load_state_dict(member.state["model"])
        opt.load_state_dict(member.state["opt"])
    for group in opt.param_groups:
        group["lr"] = member.hparams["lr"]
    state = lambda: {"model": model.state_dict(), "opt": opt.state_dict()}
    while member.running:
        for _ in range(5):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
        time.sleep(0.05)
        with torch.no_grad():
            score = -torch.nn.functional.mse_loss(model(x), y).item()
        decision = pop.tell(member, score, state=state)
        if isinstance(decision, poptrain.Exploit):
            model.load_state_dict(decision.state["model"])
            opt.load_state_dict(decision.state["opt"])
            for group in opt.param_groups:
                group["lr"] = member.hparams["lr"]
            note(kind="exploit", member=member.id, step=member.step, source=decision.source,
                 weights=[p.tolist() for p in model.parameters()], lr=opt.param_groups[0]["lr"])
        if member.step % 2 == 0:
            note(kind="ready", member=member.id, step=member.step, weights=[p.tolist() for p in model.parameters()])
pop.close()
'''


def test_four_own_loops_train_one_population_and_survive_a_killed_one(tmp_path):
    url = f"sqlite:///{tmp_path}/own.db"
    poptrain.Experiment(name="own", trainable=None, space={"lr": poptrain.LogUniform(0.001, 0.3)}, population=POPULATION,
                        steps=STEPS, ready=poptrain.Every(2), exploit=poptrain.Truncation(0.25), lease=2.0,
                        storage=url, seed=3).create()
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    logs = [tmp_path / f"log{i}.jsonl" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, str(script), url, str(log)], env=env, stderr=subprocess.PIPE, text=True)
             for log in logs]
    store = open_store(url)
    deadline = time.monotonic() + 60
    while store.progress("own", "max").steps_done < POPULATION * STEPS // 3:
        assert time.monotonic() < deadline, "the loops made no progress"
        time.sleep(0.05)
    procs[0].send_signal(signal.SIGKILL)
    for p in procs[1:]:
        assert p.wait(120) == 0, p.stderr.read()
    members = store.members("own")
    assert all(m.status == "done" and m.step == STEPS for m in members)
    assert sorted((r.member, r.step) for r in store.reports("own")) == [(m, s) for m in range(POPULATION)
                                                                      for s in range(1, STEPS + 1)]
    entries = [json.loads(line) for log in logs if log.exists() for line in log.read_text().splitlines()]
    at_ready = {(e["member"], e["step"]): e["weights"] for e in entries if e["kind"] == "ready"}
    copies = [e for e in entries if e["kind"] == "exploit"]
    events = {(e.member, e.step): e for e in store.events("own")}
    assert copies and len(events) >= len(copies)
    for copy in copies:
        event = events[(copy["member"], copy["step"])]
        assert event.source == copy["source"]
        if (event.source, event.source_step) in at_ready:  # the source's weights at the step it was copied
            assert copy["weights"] == at_ready[(event.source, event.source_step)]
        assert copy["lr"] == pytest.approx(event.new_hparams["lr"])  # the optimiser holds the explored lr
    assert any((e.source, e.source_step) in at_ready for e in events.values())


def test_ask_returns_none_once_every_member_is_done_and_tell_reports_each_interval(tmp_path):
    url = f"sqlite:///{tmp_path}/one.db"
    poptrain.Experiment(name="one", trainable=None, space={"lr": poptrain.Uniform(0.0, 1.0)}, population=2, steps=3,
                        ready=poptrain.Every(1), storage=url).create()
    pop = poptrain.connect(url, "one")
    seen = []
    while (member := pop.ask()) is not None:
        while member.running:
            decision = pop.tell(member, member.hparams["lr"] + member.step, state={"w": torch.zeros(2)})
            seen.append((member.id, member.step, type(decision).__name__))
    pop.close()
    assert sorted(s[:2] for s in seen) == [(m, s) for m in (0, 1) for s in (1, 2, 3)]
    assert {s[2] for s in seen if s[1] == 3} == {"Finished"}
    assert all(m.status == "done" for m in open_store(url).members("one"))


def test_an_engine_refuses_an_experiment_without_a_trainable(tmp_path):
    exp = poptrain.Experiment(name="none", trainable=None, space={"lr": poptrain.Uniform(0.0, 1.0)}, population=2,
                              steps=2, storage=f"sqlite:///{tmp_path}/n.db")
    with pytest.raises(poptrain.SpecError, match="has no trainable"):
        exp.run(engine="serial")


def train_function(member):
    """A whole training loop as a plain function: the same job as the class trainables, written the user's way."""
    w = torch.zeros(1) if member.state is None else member.state["w"]
    while member.running:
        w = w + member.hparams["lr"] * (3.0 - w)  # one interval of gradient steps towards 3
        decision = member.report(-float((w - 3.0) ** 2), state=lambda: {"w": w.clone()})
        if isinstance(decision, poptrain.Exploit):
            w = decision.state["w"].clone()


@pytest.mark.parametrize("engine", ["serial", "local", "ray"])
def test_a_function_trainable_runs_on_every_engine_with_workers(engine, tmp_path):
    exp = poptrain.Experiment(name="fn", trainable=train_function, space={"lr": poptrain.LogUniform(0.01, 0.5)},
                              population=4, steps=12, ready=poptrain.Every(3), storage=f"sqlite:///{tmp_path}/f.db",
                              seed=1, paths=[os.path.dirname(os.path.abspath(__file__))],  # Ray's workers import it
                              synchronous=True)  # generations copy their bottom quantile: exploits are certain
    result = exp.run(engine=engine, **({} if engine == "serial" else {"workers": 2}))
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {12}
    assert len(result.frame()) == 4 * 12 and len(result.events()) > 0
    assert result.best().score > -0.5


def test_poptrain_create_stores_a_spec_without_a_trainable_for_own_loops(tmp_path):
    from checks import cli

    spec = tmp_path / "own.toml"
    spec.write_text('name = "own"\npopulation = 2\nsteps = 2\n[space]\nlr = {type = "uniform", low = 0.0, high = 1.0}\n')
    url = f"sqlite:///{tmp_path}/c.db"
    code, out, err = cli("create", spec, "--storage", url)
    assert code == 0 and "experiment 'own' created" in out, err
    pop = poptrain.connect(url, "own")
    member = pop.ask()
    assert member is not None and member.state is None and 0.0 <= member.hparams["lr"] <= 1.0
    pop.close()
    code, out, err = cli("run", spec, "--storage", url, "--engine", "serial")
    assert code == 2 and "has no trainable" in err
