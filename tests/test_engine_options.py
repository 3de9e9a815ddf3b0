"""Engines as objects: built from a name, a TOML table, an object or the CLI's flags; options they lack are refused."""

from __future__ import annotations

import pytest

import poptrain
from poptrain.cli import main
from poptrain.engines import Local, Ray, Serial, Vectorized, make_engine
from poptrain.errors import SpecError
from poptrain.experiment import load_spec
from conftest import EXAMPLES
from trainables import HangsAtTop, Quadratic

SPACE = {"lr": poptrain.LogUniform(0.01, 0.3)}


def test_engines_are_built_from_names_tables_and_objects():
    assert make_engine("local", {"workers": 2}) == Local(workers=2)
    assert make_engine({"type": "vectorized", "device": "cpu", "compile": True}) == Vectorized(device="cpu", compile=True)
    assert make_engine({"type": "vectorized", "shards": 2}) == Vectorized(shards=2)
    assert make_engine(Local(workers=2), {"workers": 3}) == Local(workers=3)
    assert make_engine("serial") == Serial()
    assert make_engine("ray", {"resources": {"cpu": 2}}).per_worker == {"cpu": 2.0, "gpu": 0.0}
    assert Ray(device="cuda").per_worker["gpu"] == 1.0


@pytest.mark.parametrize("engine, options, message", [
    ("vectorized", {"workers": 2}, "engine vectorized has no option 'workers' (its options: device, compile, threads, memory_limit, shards, devices)"),
    ("vectorized", {"threads": 0}, "engine vectorized: threads must be a positive integer, not 0"),
    ("ray", {"interval_timeout": -1}, "engine ray: interval_timeout must be a positive number"),
    ("serial", {"device": "cuda"}, "engine serial has no option 'device'"),
    ("threads", {}, "unknown engine 'threads' (known: local, serial, vectorized, ray)"),
    ({"workers": 2}, {}, "engine table needs a type"),
    ("local", {"workers": 0}, "engine local: workers must be a positive integer, not 0"),
    ("local", {"interval_timeout": float("nan")}, "interval_timeout must be a positive number"),
])
def test_a_bad_engine_or_option_is_one_clear_error(engine, options, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_engine(engine, options)


def test_an_unknown_engine_is_refused_before_anything_is_stored(tmp_path):
    exp = poptrain.Experiment(name="q", trainable=Quadratic, space=SPACE, storage=f"sqlite:///{tmp_path}/s.db")
    with pytest.raises(SpecError, match="no option 'workers'"):
        exp.run(engine="serial", workers=2)
    assert "q" not in poptrain.store.open_store(exp.storage).experiments()


def test_a_toml_engine_table_sets_the_engine_and_its_options(tmp_path):
    spec = tmp_path / "spec.toml"
    toy = open(f"{EXAMPLES}/toy_quadratic.toml").read()
    spec.write_text(f'{toy}\n[engine]\ntype = "serial"\n')
    exp = load_spec(spec, storage=f"sqlite:///{tmp_path}/t.db", steps=8)
    assert make_engine(exp.engine) == Serial()
    assert set(exp.run().members().step) == {8}


def test_cli_flags_are_engine_options(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/c.db"
    code = main(["run", f"{EXAMPLES}/toy_quadratic.toml", "--storage", storage, "--engine", "vectorized",
                 "--workers", "2", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: engine vectorized has no option 'workers' (its options: device, compile, threads, memory_limit, shards, devices)"]


def test_a_stuck_interval_is_ended_and_charged_to_its_member(tmp_path):
    exp = poptrain.Experiment(name="hang", trainable=HangsAtTop, space=SPACE, metric="score", population=3, steps=4, exploit=None,
                              initial=[{"lr": 0.3}], max_failures=1, storage=f"sqlite:///{tmp_path}/h.db")
    result = exp.run(engine=Local(workers=2, interval_timeout=1.0))
    members = {m.id: m for m in result.store.members("hang")}
    assert members[0].status == "failed" and members[0].failures == 2
    assert "interval_timeout" in members[0].error
    assert all(members[i].status == "done" and members[i].step == 4 for i in (1, 2))


def test_the_vectorized_engine_trains_on_the_threads_asked_for_and_restores_the_setting(tmp_path, monkeypatch):
    import torch

    from poptrain.engines import vectorized

    seen = []
    real = vectorized.VectorizedRun.run
    monkeypatch.setattr(vectorized.VectorizedRun, "run", lambda self, progress=False: (
        seen.append(torch.get_num_threads()), real(self, progress))[1])
    before = torch.get_num_threads()
    for threads in (1, 2):
        exp = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/v{threads}.db",
                        population=2, steps=1)
        exp.run(engine=Vectorized(threads=threads))
    assert seen == [1, 2] and torch.get_num_threads() == before
