"""A stored spec names code; a process that joins by URL imports only the trainable's module unless its user opts in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import poptrain
from poptrain.errors import SpecError
from poptrain.speccode import check_stored_code, named_code
from conftest import ROOT

TESTS = str(Path(__file__).resolve().parent.parent)

# a module whose import leaves a mark: which processes ran its top-level code
EVIL = '''
import os
with open(os.environ["MARKS"], "a") as f:
    f.write(f"{os.getpid()}\\n")

def f(hparams, space, rng):
    return dict(hparams)
'''


@pytest.fixture(autouse=True)
def no_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POPTRAIN_TRUST_SPEC", raising=False)
    monkeypatch.delenv("POPTRAIN_TRUST_MODULES", raising=False)


def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainable: str | None = None) -> str:
    """An experiment whose explore is a function in `evilmod`, found through the spec's paths."""
    (tmp_path / "evilmod.py").write_text(EVIL)
    monkeypatch.setenv("MARKS", str(tmp_path / "marks"))
    url = f"sqlite:///{tmp_path}/s.db"
    poptrain.Experiment(name="s", trainable=trainable, space={"lr": poptrain.Uniform(0.0, 1.0)}, population=2, steps=2,
                        metric="score",
                        explore={"type": "function", "path": "evilmod:f"}, paths=[str(tmp_path), TESTS],
                        storage=url).create()  # the creator imports what it wrote
    return url


def marks(tmp_path: Path) -> set[int]:
    path = tmp_path / "marks"
    return {int(line) for line in path.read_text().split()} if path.exists() else set()


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS]), **env})


def test_connect_refuses_a_stored_function_strategy_beyond_the_trainables_module_and_imports_nothing(tmp_path,
                                                                                                     monkeypatch):
    url = stored(tmp_path, monkeypatch)
    before = marks(tmp_path)
    run = python(f"import poptrain; poptrain.connect({url!r}, 's')")
    assert run.returncode != 0 and marks(tmp_path) == before  # evilmod's code never ran
    last = run.stderr.strip().splitlines()[-1]
    assert "evilmod:f (explore)" in last and "POPTRAIN_TRUST_MODULES=evilmod" in last and "trust_spec_code" in last


def test_each_opt_in_imports_it_and_says_so_first(tmp_path, monkeypatch):
    url = stored(tmp_path, monkeypatch)
    code = ("import logging, poptrain; logging.basicConfig(level=logging.INFO); "
            f"c = poptrain.connect({url!r}, 's', trust_spec_code=TRUST); print(c.spec.explore)")
    for trust, env in ((True, {}), (False, {"POPTRAIN_TRUST_MODULES": "evilmod"}), (False, {"POPTRAIN_TRUST_SPEC": "1"})):
        before = marks(tmp_path)
        run = python(code.replace("TRUST", str(trust)), **env)
        assert run.returncode == 0, run.stderr
        assert len(marks(tmp_path) - before) == 1  # imported, once
        assert "importing evilmod:f (its explore)" in run.stderr


def test_poptrain_worker_and_resume_refuse_it_without_the_flag(tmp_path, monkeypatch):
    from checks import cli

    url = stored(tmp_path, monkeypatch, trainable="trainables:Quadratic")
    before = marks(tmp_path)
    code, _, err = cli("resume", "--storage", url, "--experiment", "s", "--engine", "serial", "--quiet")
    assert code == 2 and "evilmod:f (explore)" in err and len(err.strip().splitlines()) == 1
    worker = subprocess.run([sys.executable, "-m", "poptrain", "worker", "--storage", url, "--experiment", "s"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")})
    assert worker.returncode == 2 and "--trust-spec-code" not in worker.stdout
    assert "evilmod:f (explore)" in worker.stderr.strip().splitlines()[-1]
    assert marks(tmp_path) == before
    worker = subprocess.run([sys.executable, "-m", "poptrain", "worker", "--storage", url, "--experiment", "s",
                             "--trust-spec-code", "--quiet"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")})
    assert worker.returncode == 0, worker.stderr
    assert len(marks(tmp_path) - before) == 1
    assert set(poptrain.load(url, "s").members().step) == {2}


def test_the_trainables_own_module_and_poptrains_need_no_opt_in():
    spec = {"trainable": "mymodels:Net", "ready": {"type": "every", "intervals": 2},
            "exploit": {"type": "mymodels:Top"}, "explore": {"type": "function", "path": "poptrain.policy.function:unchanged"}}
    assert named_code(spec) == [("trainable", "mymodels:Net"), ("exploit", "mymodels:Top"),
                                ("explore", "poptrain.policy.function:unchanged")]
    check_stored_code(spec, "x")  # nothing beyond the trainable's module
    with pytest.raises(SpecError, match="other.strategies:Top \\(exploit\\)"):
        check_stored_code({**spec, "exploit": {"type": "other.strategies:Top"}}, "x")
    check_stored_code({**spec, "exploit": {"type": "other.strategies:Top"}}, "x", trust=True)
