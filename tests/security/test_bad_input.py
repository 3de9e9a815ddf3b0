"""Bad values in a spec, a bool for a score, read-only folders and full disks: each is one `error:`
line naming the thing and the fix, and loses nothing already stored."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fsspec.implementations.local import LocalFileSystem
from sqlalchemy import event
from sqlalchemy.pool import Pool

import poptrain
from checks import cli
from poptrain.outcome import score_of
from poptrain.errors import SpecError
from poptrain.store import open_store
from trainables import Quadratic

TESTS = str(Path(__file__).resolve().parent.parent)
SPEC = """name = "q"
trainable = "trainables:Quadratic"
metric = "score"
population = 2
steps = 4
engine = "serial"
paths = [{tests}]
{extra}
[space]
lr = {{type = "uniform", low = 0.01, high = 0.3}}
[ready]
type = "every"
intervals = 2
"""




def spec(folder: Path, extra: str = "") -> Path:
    path = folder / "spec.toml"
    path.write_text(SPEC.format(tests=json.dumps(TESTS), extra=extra))
    return path


def last_error(code: int, err: str, *needles: str) -> str:
    """Exit 2, no traceback, and stderr ends with one `error:` line holding every needle."""
    assert code == 2, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and sum(x.startswith("error:") for x in err.splitlines()) == 1, err
    for needle in needles:
        assert needle in line, line
    return line


def only_error(code: int, err: str, *needles: str) -> str:
    """As last_error, and that line is all stderr holds."""
    line = last_error(code, err, *needles)
    assert len(err.strip().splitlines()) == 1, err
    return line


# every value in a spec is checked before anything is stored
@pytest.mark.parametrize("extra, needles", [
    ("lease = nan", ("lease", "nan")), ("lease = inf", ("lease", "inf")), ("lease = -1.0", ("lease",)),
    ("lease = 0", ("lease",)), ("lease = true", ("lease",)), ("seed = -5", ("seed", "-5")),
    ("seed = 1.5", ("seed",)), ("seed = 18446744073709551616", ("seed",)),
    ("max_failures = -1", ("max_failures",)), ("keep_checkpoints = 0", ("keep_checkpoints",)),
    ("checkpoints = 3", ("checkpoints",)), ("initial = 3", ("initial",)), ("member_seeds = [-1, 2]", ("member_seeds",)),
])
def test_spec_values_are_refused_in_one_line_before_anything_is_stored(tmp_path, extra, needles):
    url = f"sqlite:///{tmp_path}/s.db"
    only_error(*cli("run", spec(tmp_path, extra), "--storage", url, "--quiet")[::2], *needles)
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("flags, needles", [
    (["--seed", "-1"], ("seed", "-1")), (["--population", "0"], ("population",)), (["--steps", "-3"], ("steps",)),
    (["--steps", "100000000"], ("steps", "10_000_000")), (["--name", ".."], ("experiment name", "'..'")),
    (["--name", "a" * 300], ("experiment name", "300 characters", "100")),
])
def test_flag_values_are_refused_in_one_line(tmp_path, flags, needles):
    url = f"sqlite:///{tmp_path}/s.db"
    only_error(*cli("run", spec(tmp_path), "--storage", url, "--quiet", *flags)[::2], *needles)
    assert not (tmp_path / "s.db").exists()


def test_a_huge_population_is_refused_at_once_with_a_note_on_memory(tmp_path):
    started = time.perf_counter()
    code, _, err = cli("run", spec(tmp_path), "--storage", f"sqlite:///{tmp_path}/s.db", "--population", "10000000")
    only_error(code, err, "population", "100_000", "memory")
    assert time.perf_counter() - started < 5  # it used to build ten million members first (90 s, 1.9 GB)


@pytest.mark.parametrize("name", ["..", ".", "...", "a" * 101, "a/b", "/abs", "a\\b", ""])
def test_experiment_names_that_leave_the_folder_or_the_file_system_limit_are_refused(name):
    with pytest.raises(SpecError, match="experiment name"):
        poptrain.Experiment(name=name, trainable=Quadratic, space={"lr": poptrain.Uniform(0.01, 0.3)},
                            storage="memory://names")


def test_names_poptrain_derives_stay_accepted():
    exp = poptrain.Experiment(name="a" * 100, trainable=Quadratic, space={"lr": poptrain.Uniform(0.01, 0.3)},
                              storage="memory://names")
    assert exp.baseline().name == "a" * 100 + "-baseline"


@pytest.mark.parametrize("lease", [float("nan"), float("inf"), -1.0, 0.0, 1e300, True, "60"])
def test_lease_must_be_finite_positive_and_bounded(lease):
    with pytest.raises(SpecError, match="lease"):
        poptrain.Experiment(name="e", trainable=Quadratic, space={"lr": poptrain.Uniform(0.01, 0.3)}, lease=lease,
                            storage="memory://lease")


def test_the_bounds_themselves_are_accepted():
    exp = poptrain.Experiment(name="e", trainable=Quadratic, space={"lr": poptrain.Uniform(0.01, 0.3)}, lease=0.1,
                              seed=2**63 - 1, population=100_000, storage="memory://bounds", initial=[{"lr": 0.1}])
    assert exp.seed == 2**63 - 1 and exp.population == 100_000


# a bool is not a score, returned alone or in a dict
@pytest.mark.parametrize("result", [True, False, np.bool_(True), torch.tensor(True), {"score": True},
                                    {"score": np.bool_(False)}, None, "0.5"])
def test_a_bool_or_other_non_number_is_not_a_score(result):
    with pytest.raises(ValueError, match="not a number"):
        score_of(result, "score" if isinstance(result, dict) else None)


def test_numbers_still_are_scores():
    assert score_of(1, None) == (1.0, {"score": 1.0})
    assert score_of({"score": np.float32(0.5), "ok": True}, "score") == (0.5, {"score": 0.5, "ok": True})
    assert score_of(torch.tensor(float("nan")), None)[0] is None


class ScoresTrue(Quadratic):
    """evaluate() returns True: a flag, not a score."""

    def evaluate(self) -> Any:
        return True


def test_a_trainable_scoring_true_fails_its_members_with_the_reason(tmp_path):
    here = str(Path(__file__).resolve().parent)
    text = SPEC.format(tests=f"{json.dumps(TESTS)}, {json.dumps(here)}", extra="max_failures = 0").replace(
        'trainable = "trainables:Quadratic"', 'trainable = "test_bad_input:ScoresTrue"').replace(
        'metric = "score"\n', "")
    (tmp_path / "spec.toml").write_text(text)
    code, _, err = cli("run", tmp_path / "spec.toml", "--storage", f"sqlite:///{tmp_path}/s.db", "--quiet")
    last_error(code, err, "every member", "True, not a number")


# files on the write path
def test_a_read_only_checkpoint_folder_is_one_line_and_stores_nothing(tmp_path):
    code, _, err = cli("run", spec(tmp_path), "--storage", f"sqlite:///{tmp_path}/s.db", "--checkpoints", "/sys",
                       "--quiet")
    only_error(code, err, "/sys", "writable", "--checkpoints")  # /sys refuses writes, even to root
    assert open_store(f"sqlite:///{tmp_path}/s.db").experiments() == []  # refused before the spec was stored


def test_a_read_only_store_folder_is_one_line(tmp_path):
    code, _, err = cli("run", spec(tmp_path), "--storage", "sqlite:////sys/poptrain.db", "--checkpoints",
                       tmp_path / "ck", "--quiet")
    only_error(code, err, "/sys/poptrain.db", "writable", "choose a location")


def test_a_folder_made_read_only_is_named_with_the_fix(tmp_path, monkeypatch):
    ck = tmp_path / "ck"
    ck.mkdir()
    real_open = LocalFileSystem._open

    def refuse(self: LocalFileSystem, path: str, mode: str = "rb", **kw: Any) -> Any:
        if "w" in mode and str(path).startswith(str(ck)):
            raise PermissionError(errno.EROFS, "Read-only file system", path)
        return real_open(self, path, mode, **kw)

    monkeypatch.setattr(LocalFileSystem, "_open", refuse)
    code, _, err = cli("run", spec(tmp_path), "--storage", f"sqlite:///{tmp_path}/s.db", "--checkpoints", ck, "--quiet")
    only_error(code, err, str(ck), "Read-only file system", "writable")
    assert os.listdir(ck) == [] and open_store(f"sqlite:///{tmp_path}/s.db").experiments() == []


@pytest.fixture
def full_checkpoint_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoint files open, but their bytes go to /dev/full: the disk fills up after the run started."""
    real_open = LocalFileSystem._open

    def full(self: LocalFileSystem, path: str, mode: str = "rb", **kw: Any) -> Any:
        f = real_open(self, path, mode, **kw)
        if "w" in mode and ".ckpt.tmp-" in str(path):
            f.f.close()
            f.f = open("/dev/full", "wb")  # the error comes when the buffer is flushed, as on a real full disk
        return f

    monkeypatch.setattr(LocalFileSystem, "_open", full)


def test_a_full_disk_for_checkpoints_ends_in_one_line_and_leaves_no_temporary_files(tmp_path, full_checkpoint_disk):
    ck = tmp_path / "ck"
    code, _, err = cli("run", spec(tmp_path, "max_failures = 0"), "--storage", f"sqlite:///{tmp_path}/s.db",
                       "--checkpoints", ck, "--quiet")
    last_error(code, err, str(ck), "No space left on device", "free space")
    leftovers = [name for _, _, files in os.walk(ck) for name in files]
    assert leftovers == []  # the temporary files were removed when their writes failed


def test_a_full_sqlite_database_is_one_line_and_keeps_what_it_held(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    assert cli("run", spec(tmp_path), "--storage", url, "--name", "first", "--quiet")[0] == 0
    before = poptrain.load(url, "first").frame()

    def no_room(con: Any, _record: Any) -> None:  # SQLite may not grow the file: "database or disk is full"
        cursor = con.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    event.listen(Pool, "connect", no_room)
    try:
        code, _, err = cli("run", spec(tmp_path), "--storage", url, "--name", "second", "--population", "300",
                           "--quiet")
    finally:
        event.remove(Pool, "connect", no_room)
    only_error(code, err, url, "database or disk is full", "free space")
    after = poptrain.load(url, "first").frame()
    assert len(before) == 8 and after.equals(before)


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "{a = " * 3000 + "1" + "}" * 3000, "[" * 17 + "]" * 17])
def test_a_spec_nested_too_deeply_is_one_line_not_a_recursion_error(tmp_path, value):
    path = tmp_path / "deep.toml"
    path.write_text(f'name = "deep"\nspace = {value}\n')
    code, _, err = cli("run", path, "--storage", f"sqlite:///{tmp_path}/d.db")
    assert code == 2 and err.count("\n") == 1 and "nest" in err and "16 levels" in err
    assert not (tmp_path / "d.db").exists()
