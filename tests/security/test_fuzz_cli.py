"""Generated specs and flags for `poptrain run` and `poptrain status`: every call ends with exit 0,
or exit 2 and one `error:` line; never a traceback; what the store held before is intact after.

Tiny populations on the serial engine keep each call short; the examples are few and fixed in
number, so the whole module stays within about a minute on two cores. The storage and checkpoint
URLs and the import paths are not generated: they reach the file system and sys.path beyond the test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import poptrain
from checks import cli

TESTS = str(Path(__file__).resolve().parent.parent)
ROOT = str(Path(TESTS).parent)
BASE = {"name": "fuzz", "trainable": "trainables:Quadratic", "metric": "score", "population": 2, "steps": 2,
        "engine": "serial", "paths": [TESTS], "space": {"lr": {"type": "uniform", "low": 0.01, "high": 0.3}},
        "ready": {"type": "every", "intervals": 1}}
FIELDS = ["name", "population", "steps", "seed", "lease", "max_failures", "keep_checkpoints", "metric", "mode",
          "synchronous", "initial", "member_seeds", "schedule", "space", "ready", "exploit", "explore", "engine",
          "unknown_field"]

odd_text = st.text(max_size=24) | st.sampled_from(["", "..", ".", "a/b", "../x", "-1", "nan", "inf", "[/]", "lr[/red]",
                                                   "<script>", "a" * 300, "\x00", "é", "fuzz", "keep"])
numbers = (st.integers(min_value=-2**63, max_value=2**63 - 1)
           | st.sampled_from([0, 1, 2, 3, -1, -5, 100_001, 10**7, 2**31, 2**63 - 1])
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([math.nan, math.inf, -math.inf, 1e300]))
scalars = numbers | st.booleans() | odd_text
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(
    st.sampled_from(["type", "low", "high", "lr", "step", "hparams", "intervals", "fraction"]), scalars, max_size=3)
small = st.integers(min_value=1, max_value=3)  # valid sizes, so that many generated specs train
FIELD_VALUES = {"population": small | numbers, "steps": small | numbers, "mode": st.sampled_from(["min", "max"]) | values,
                "engine": st.sampled_from(["serial", "", "nope", 3, "Serial"]), "synchronous": st.booleans() | values,
                "name": st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True) | values}


@st.composite
def specs(draw: Any) -> dict[str, Any]:
    """The base spec's changes: at most two fields, so that most specs are wrong in one place, some in none."""
    fields = draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True))
    return {field: draw(FIELD_VALUES.get(field, values)) for field in fields}


flag_values = small.map(str) | st.integers(min_value=-2**70, max_value=2**70).map(str) | odd_text
flags = st.lists(st.tuples(st.sampled_from(["--seed", "--population", "--steps", "--name"]), flag_values), max_size=2)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # nan, inf and -inf are TOML floats
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def write_spec(folder: Path, changes: dict[str, Any]) -> Path:
    spec = {**BASE, **changes}
    path = folder / "spec.toml"
    path.write_text("\n".join(f"{k} = {toml_value(v)}" for k, v in spec.items()) + "\n")
    return path



def check_ending(code: int, err: str, quiet: bool = True) -> None:
    """0 with no error, or 2 with exactly one `error:` line, the last; only poptrain's log lines besides
    (and, unless quiet, the progress display)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    if code == 0:
        assert errors == [], err
    else:
        assert code == 2, err
        assert len(errors) == 1 and lines[-1] == errors[0], err
    assert not quiet or all(line.startswith(("error:", "poptrain: ")) for line in lines), err



@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any]:
    """A store that already holds a finished experiment 'keep', and its reports."""
    folder = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{folder}/s.db"
    code, _, err = cli("run", str(write_spec(folder, {"name": "keep"})), "--storage", url, "--quiet")
    assert code == 0, err
    return folder, url, poptrain.load(url, "keep").frame()


def kept(url: str, before: Any) -> None:
    after = poptrain.load(url, "keep")
    assert after.frame().equals(before) and all(m.status == "done" for m in after.store.members("keep"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=specs(), extra=flags, quiet=st.booleans())
def test_generated_specs_and_flags_for_run(store, changes, extra, quiet):
    folder, url, before = store
    argv = ["run", str(write_spec(folder, changes)), "--storage", url, *(x for pair in extra for x in pair)]
    code, _, err = cli(*argv, *(["--quiet"] if quiet else []))
    check_ending(code, err, quiet=quiet)
    kept(url, before)


@settings(max_examples=25, deadline=None)
@given(name=st.none() | odd_text)
def test_generated_names_for_status(store, name):
    folder, url, before = store
    code, _, err = cli("status", "--storage", url, *([] if name is None else ["--experiment", name]))
    check_ending(code, err)
    kept(url, before)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=specs(), extra=flags)
def test_generated_specs_through_the_installed_command(store, changes, extra):
    folder, url, before = store
    argv = [x for pair in extra for x in pair if "\x00" not in x]  # argv cannot carry a NUL byte
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), TESTS])}
    for command in (["run", str(write_spec(folder, changes)), "--storage", url, "--quiet", *argv],
                    ["status", "--storage", url]):
        done = subprocess.run([sys.executable, "-m", "poptrain", *command], capture_output=True, text=True, env=env,
                              timeout=120)
        check_ending(done.returncode, done.stderr)
    kept(url, before)
