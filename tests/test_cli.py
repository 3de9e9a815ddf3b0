"""The `poptrain` command line: run, status, best, resume, worker, and the mistakes users make."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import poptrain
from checks import cli
from poptrain.errors import SpecError
from poptrain.experiment import load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TOY = EXAMPLES / "toy_quadratic.toml"




def sqlite(path: Path) -> str:
    return f"sqlite:///{path}"


def toy_toml(folder: Path, replace: dict[str, str] | None = None, extra: str = "") -> Path:
    """A copy of the toy spec in `folder`, importing from the examples folder, with lines replaced."""
    text = TOY.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"the toy example no longer contains {old!r}"
        text = text.replace(old, new)
    path = folder / "spec.toml"
    path.write_text(f"paths = [{json.dumps(str(EXAMPLES))}]\n{extra}{text}")
    return path


def assert_user_error(code: int, out: str, err: str, *needles: str) -> None:
    """Exit 2, one `error:` line on stderr naming the problem, no traceback."""
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """The toy spec run once with the serial engine and the progress display on: (storage, stdout, stderr)."""
    url = sqlite(tmp_path_factory.mktemp("toy") / "toy.db")
    code, out, err = cli("run", TOY, "--storage", url, "--engine", "serial")
    assert code == 0, err
    return url, out, err


# run
def test_run_summary_names_best_checkpoint_store_and_checkpoint_folder(toy_run: tuple[str, str, str]) -> None:
    url, out, err = toy_run
    result = poptrain.load(url, "toy_quadratic")
    best = result.best()
    assert best.score > 1.1  # PBT on the paper's toy gets near the optimum 1.2
    assert f"store:        {url}" in out
    assert f"checkpoints:  {result.spec['checkpoints']}" in out
    assert result.spec["checkpoints"] == url[len("sqlite:///"):-len(".db")] + ".checkpoints"
    assert f"checkpoint:   {best.checkpoint_url}" in out and os.path.exists(best.checkpoint_url)
    assert f"best member:  {best.id} (q {best.score:.4g} at step 200" in out
    assert "exploits" in err  # the progress display ran (on stderr)


def test_run_flags_override_the_toml(tmp_path: Path) -> None:
    url = sqlite(tmp_path / "o.db")
    code, out, err = cli("run", TOY, "--storage", url, "--engine", "serial", "--quiet", "--name", "short",
                         "--steps", "8", "--seed", "3", "--synchronous")
    assert code == 0, err
    assert err == ""  # --quiet: no progress display
    spec = poptrain.load(url, "short").spec
    assert (spec["steps"], spec["seed"], spec["synchronous"]) == (8, 3, True)
    assert all(m.step == 8 for m in poptrain.load(url, "short").store.members("short"))


def test_run_population_flag_is_checked_against_the_spec(tmp_path: Path) -> None:
    code, out, err = cli("run", TOY, "--storage", sqlite(tmp_path / "p.db"), "--engine", "serial", "--population", "1")
    assert_user_error(code, out, err, str(TOY), "initial lists 2 members but population is 1")


def test_run_baseline_compares_pbt_with_random_search() -> None:
    url = "memory://cli-baseline"  # same process, so the in-memory store outlives the command
    code, out, err = cli("run", TOY, "--storage", url, "--engine", "serial", "--quiet", "--baseline")
    assert code == 0, err
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in out.splitlines() if line.startswith("│") and ("PBT" in line or "random search" in line)}
    assert set(rows) == {"PBT", "random search (no exploit)"}
    pbt, random_search = rows["PBT"], rows["random search (no exploit)"]
    assert float(pbt[0]) > 1.1 and float(random_search[0]) == pytest.approx(0.3897, abs=1e-4)  # the paper's plateau
    assert "best" in out and "mean" in out and "worst" in out  # the columns lead with best, mean, worst
    assert float(pbt[0]) >= float(pbt[1]) >= float(pbt[2]) > float(random_search[0])  # PBT's worst beats both plateaus
    assert float(random_search[1]) == float(random_search[2]) == pytest.approx(0.3897, abs=1e-4)
    assert int(pbt[3]) > 0 and random_search[3] == "0"  # exploits
    assert pbt[4] == random_search[4] == "400"  # equal compute: 2 members x 200 intervals
    assert poptrain.load(url, "toy_quadratic-baseline").events() == []


def test_interrupt_says_how_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: poptrain.Experiment, **_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(poptrain.Experiment, "run", interrupted)
    url = sqlite(tmp_path / "i.db")
    code, out, err = cli("run", TOY, "--storage", url, "--engine", "serial", "--quiet")
    assert code == 130
    assert err.strip() == f"interrupted: continue with `poptrain resume --storage {url} --experiment toy_quadratic`"


FLAKY = '''
from toy_quadratic import ToyQuadratic


class Flaky(ToyQuadratic):
    raised = 0

    def train(self):
        if Flaky.raised == 0:
            Flaky.raised += 1
            raise ValueError("boom\\nsecond line")
        super().train()
'''


@pytest.mark.parametrize("quiet", [False, True])
def test_warnings_go_to_stderr_one_line_each_unless_quiet(tmp_path: Path, quiet: bool) -> None:
    (tmp_path / f"flaky_{quiet}.py").write_text(FLAKY)
    spec = toy_toml(tmp_path, {'"toy_quadratic:ToyQuadratic"': f'"flaky_{quiet}:Flaky"', "steps = 200": "steps = 8"})
    code, out, err = cli("run", spec, "--storage", sqlite(tmp_path / "f.db"), "--engine", "serial",
                         *(["--quiet"] if quiet else []))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    if quiet:
        assert warnings == [] and "boom" not in err
    else:
        assert len(warnings) == 1 and "raised" in warnings[0] and "boom" in warnings[0]
        assert "second line" in warnings[0]  # the multi-line error stayed on its line


def test_run_in_which_every_member_failed_is_an_error(tmp_path: Path) -> None:
    spec = toy_toml(tmp_path, {'metric = "q"': 'metric = "loss"'})
    url = sqlite(tmp_path / "m.db")
    code, out, err = cli("run", spec, "--storage", url, "--engine", "serial", "--quiet")
    assert "failed members: 2" in out  # the summary still says where things are
    assert code == 2 and "Traceback" not in err
    *logged, last = err.strip().splitlines()
    assert last.startswith("error: every member of 'toy_quadratic' failed") and "'loss'" in last
    assert len(logged) == 2 and all(line.startswith("poptrain: ERROR: member") for line in logged)  # --quiet keeps errors


def test_a_worker_whose_every_member_failed_is_an_error_too(tmp_path: Path) -> None:
    spec = toy_toml(tmp_path, {'metric = "q"': 'metric = "loss"'})
    url = sqlite(tmp_path / "w.db")
    code, _, err = cli("worker", spec, "--storage", url, "--quiet")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: every member of 'toy_quadratic' failed")
    code, out, err = cli("status", "--storage", url, "--experiment", "toy_quadratic")
    assert code == 0 and "member 0 failed: ValueError" in out


# status, best, worker, resume
def test_status_lists_experiments_and_members(toy_run: tuple[str, str, str]) -> None:
    url, _, _ = toy_run
    code, out, err = cli("status", "--storage", url)
    assert code == 0, err
    assert "toy_quadratic" in out and "400/400" in out
    result = poptrain.load(url, "toy_quadratic")
    code, out, err = cli("status", "--storage", url, "--experiment", "toy_quadratic")
    assert code == 0, err
    assert f"exploits so far: {len(result.events())}" in out and len(result.events()) > 0
    members_table = out.split("lineage: who copied whom")[0]
    member_rows = [line for line in members_table.splitlines() if line.startswith("│")]
    assert len(member_rows) == 2 and all("done" in row and "200" in row for row in member_rows)


def test_status_shows_who_copied_whom_and_the_best_schedule(toy_run: tuple[str, str, str]) -> None:
    url, _, _ = toy_run
    result = poptrain.load(url, "toy_quadratic")
    code, out, _ = cli("status", "--storage", url, "--experiment", "toy_quadratic")
    lineage = out.split("lineage: who copied whom")[1].split("schedule of the best member")[0]
    rows = {line.split("│")[1].strip(): line.split("│")[2] for line in lineage.splitlines() if line.startswith("│")}
    copies = result.copies()
    assert len(copies) > 0 and set(rows) == {str(m) for m in copies.member}
    for member, source, times in copies.values.tolist():
        assert f"{source} ({times})" in rows[str(member)]
    schedule = out.split("schedule of the best member")[1]
    curve = result.winning_lineage()
    assert f"–{len(curve)} " in schedule  # the stretches run to the last step of the stitched curve


def test_best_prints_the_best_member_as_json(toy_run: tuple[str, str, str]) -> None:
    url, _, _ = toy_run
    code, out, err = cli("best", "--storage", url, "--experiment", "toy_quadratic")
    assert code == 0, err
    best, expected = json.loads(out), poptrain.load(url, "toy_quadratic").best()
    assert best["score"] == pytest.approx(expected.score)
    assert (best["id"], best["step"], best["hparams"]) == (expected.id, 200, expected.hparams)
    assert best["checkpoint"] == expected.checkpoint_url and os.path.exists(best["checkpoint"])


def test_best_of_an_experiment_not_in_the_store(toy_run: tuple[str, str, str]) -> None:
    url, _, _ = toy_run
    assert_user_error(*cli("best", "--storage", url, "--experiment", "nope"), "'nope'", "toy_quadratic")


def test_readers_do_not_create_a_store_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert_user_error(*cli("status", "--storage", sqlite(missing)), str(missing))
    assert_user_error(*cli("best", "--storage", sqlite(missing), "--experiment", "x"), str(missing))
    assert not missing.exists()


def test_resume_of_a_finished_experiment_is_a_no_op(toy_run: tuple[str, str, str]) -> None:
    url, _, _ = toy_run
    before = len(poptrain.load(url, "toy_quadratic").frame())
    code, out, err = cli("resume", "--storage", url, "--experiment", "toy_quadratic", "--engine", "serial", "--quiet")
    assert code == 0, err
    assert len(poptrain.load(url, "toy_quadratic").frame()) == before
    assert "best member:" in out and f"store:        {url}" in out


def test_worker_joins_by_storage_and_name(toy_run: tuple[str, str, str]) -> None:
    url, _, _ = toy_run
    assert cli("worker", "--storage", url, "--experiment", "toy_quadratic", "--id", "w1")[0] == 0  # nothing left
    assert_user_error(*cli("worker", "--storage", url, "--experiment", "nope"), "'nope'")


def test_worker_with_a_spec_creates_the_experiment_once_then_trains(tmp_path: Path) -> None:
    url = sqlite(tmp_path / "w.db")
    spec = toy_toml(tmp_path, {"steps = 200": "steps = 12"})
    assert cli("worker", spec, "--storage", url, "--checkpoints", tmp_path / "ckpts", "--quiet")[0] == 0
    result = poptrain.load(url, "toy_quadratic")
    assert set(result.members()["step"]) == {12} and any((tmp_path / "ckpts").iterdir())
    assert cli("worker", spec, "--storage", url, "--checkpoints", tmp_path / "ckpts", "--quiet")[0] == 0  # joins it
    assert len(result.frame()) == 2 * 12
    assert_user_error(*cli("worker", spec, "--storage", url, "--quiet"), "checkpoints differ")
    assert_user_error(*cli("worker", "--storage", url), "--experiment NAME")


def test_the_slurm_array_script_runs_one_worker_per_task(tmp_path: Path) -> None:
    """Two 'array tasks' of examples/slurm_workers.sbatch, started together, finish one experiment."""
    url = sqlite(tmp_path / "slurm.db")
    spec = toy_toml(tmp_path, {"steps = 200": "steps = 12"})
    env = {**os.environ, "POPTRAIN_STORAGE": url, "POPTRAIN_CHECKPOINTS": str(tmp_path / "ckpts"),
           "POPTRAIN": f"{sys.executable} -m poptrain", "SLURM_ARRAY_JOB_ID": "7",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    tasks = [subprocess.Popen(["bash", str(EXAMPLES / "slurm_workers.sbatch"), str(spec)],
                              env={**env, "SLURM_ARRAY_TASK_ID": str(i)}) for i in range(2)]
    assert [t.wait(120) for t in tasks] == [0, 0]
    frame = poptrain.load(url, "toy_quadratic").frame()
    assert len(frame) == 2 * 12 and set(frame.groupby("member").step.max()) == {12}


def test_negative_worker_resources_are_one_error_line(tmp_path: Path) -> None:
    assert_user_error(*cli("run", TOY, "--storage", sqlite(tmp_path / "r.db"), "--engine", "ray",
                           "--gpus-per-worker", "-1"), "gpu must be a number >= 0")


# the user's mistakes
BAD_SPECS = {
    "unknown hyperparameter in initial": ({"initial = [{h0 = 1.0, h1 = 0.0}": "initial = [{h0 = 1.0, hz = 0.0}"},
                                          "'hz'"),
    "low above high": ({'h0 = {type = "uniform", low = 0.0, high = 1.0}': 'h0 = {type = "uniform", low = 2.0, high = 1.0}'},
                       "low 2.0 > high 1.0"),
    "unknown exploit strategy": ({'type = "truncation"': 'type = "bogus"'}, "'bogus'"),
    "trainable that does not exist": ({'"toy_quadratic:ToyQuadratic"': '"no_such_module:Model"'}, "no_such_module"),
    "TOML syntax error": ({"population = 2": "population = "},
                          # toy_toml adds one line (paths) above the example's text
                          f"line {TOY.read_text().splitlines().index('population = 2') + 2}"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_is_one_error_line(tmp_path: Path, case: str) -> None:
    replace, needle = BAD_SPECS[case]
    spec = toy_toml(tmp_path, replace)
    code, out, err = cli("run", spec, "--storage", sqlite(tmp_path / "x.db"), "--engine", "serial", "--quiet")
    assert_user_error(code, out, err, str(spec), needle)


def test_bad_specs_against_an_existing_store_lose_nothing(toy_run: tuple[str, str, str], tmp_path: Path) -> None:
    url, _, _ = toy_run
    before = poptrain.load(url, "toy_quadratic")
    frame, events = before.frame(), before.events()
    for case, (replace, needle) in BAD_SPECS.items():
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        assert_user_error(*cli("run", toy_toml(folder, replace), "--storage", url, "--engine", "serial", "--quiet"),
                          needle)
    code, out, err = cli("run", TOY, "--storage", url, "--engine", "serial", "--steps", "50", "--quiet")
    assert_user_error(code, out, err, "already exists", "steps")  # a changed spec never overwrites a stored run
    after = poptrain.load(url, "toy_quadratic")
    assert after.frame().equals(frame) and after.events() == events


def test_storage_directory_that_does_not_exist(tmp_path: Path) -> None:
    url = sqlite(tmp_path / "no" / "such" / "dir" / "x.db")
    code, out, err = cli("run", TOY, "--storage", url, "--engine", "serial", "--quiet")
    assert_user_error(code, out, err, str(tmp_path / "no" / "such" / "dir"), "does not exist")


def test_a_shared_store_without_checkpoints_is_one_error_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("POPTRAIN_CHECKPOINTS", raising=False)
    spec = toy_toml(tmp_path)
    for command in ("run", "worker", "create"):
        code, out, err = cli(command, spec, "--storage", "postgresql+psycopg://pbt@127.0.0.1:1/pbt")
        assert_user_error(code, out, err, str(spec), "checkpoints", "POPTRAIN_CHECKPOINTS", '"local"')


def test_missing_toml_file(tmp_path: Path) -> None:
    assert_user_error(*cli("run", tmp_path / "nope.toml", "--engine", "serial"), str(tmp_path / "nope.toml"))


def test_local_engine_refuses_a_memory_store() -> None:
    code, out, err = cli("run", TOY, "--storage", "memory://cli-local", "--engine", "local", "--quiet")
    assert_user_error(code, out, err, "sqlite:///")


def test_argparse_mistakes_exit_2() -> None:
    assert cli("bogus")[0] == 2
    assert cli("run", TOY, "--no-such-flag")[0] == 2
    assert cli("run", TOY, "--engine", "warp")[0] == 2
    assert cli("run", TOY, "--workers", "0")[0] == 2
    assert cli("best", "--storage", "memory://x")[0] == 2  # --experiment is required


def test_python_m_poptrain_help() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "poptrain", "--help"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("run", "worker", "status", "best", "resume"):
        assert command in done.stdout
    code, out, _ = cli("run", "--help")
    assert code == 0 and "--baseline" in out and "--storage" in out


# load_spec
def test_load_spec_resolves_paths_from_the_toml_folder_and_applies_overrides(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my_toy.py").write_text("from toy_quadratic import ToyQuadratic as MyToy\n")
    spec = toy_toml(tmp_path, {'"toy_quadratic:ToyQuadratic"': '"my_toy:MyToy"'})
    text = spec.read_text().replace("paths = [", 'paths = ["models", ', 1)
    spec.write_text(text)
    exp = load_spec(spec, steps=5, seed=None, storage="memory://load-spec")
    assert exp.paths[:2] == [str(tmp_path), str(tmp_path / "models")]
    assert (exp.steps, exp.seed, exp.storage) == (5, 0, "memory://load-spec")


def test_a_spec_puts_its_paths_on_sys_path_only_to_import_from_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    module = f"explore_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text("def explore(hparams, space, rng):\n    return dict(hparams)\n")
    space = {"lr": poptrain.LogUniform(0.01, 0.3)}
    own_loops = poptrain.Experiment(name="e", trainable=None, space=space, storage="memory://paths", paths=[str(tmp_path)])
    assert own_loops.paths == [str(tmp_path)] and str(tmp_path) not in sys.path  # nothing imported, nothing added
    try:
        exp = poptrain.Experiment(name="e", trainable=None, space=space, storage="memory://paths", paths=[str(tmp_path)],
                                  explore={"type": "function", "path": f"{module}:explore"})
        assert exp.explore.to_dict()["path"] == f"{module}:explore"  # imported from the spec's folder
        poptrain.Experiment.from_spec(exp.to_spec())
        assert sys.path.count(str(tmp_path)) == 1  # once, however often the spec is loaded
    finally:
        sys.modules.pop(module, None)


def test_load_spec_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\npaths = "examples"\n')
    with pytest.raises(SpecError, match=r"bad\.toml: paths must be a list"):
        load_spec(bad)


def test_status_of_a_large_population_lists_its_best_and_all_of_them_when_asked(tmp_path: Path) -> None:
    from poptrain.cli.show import SHOWN_MEMBERS

    url = f"sqlite:///{tmp_path}/large.db"
    store_members = SHOWN_MEMBERS + 5
    poptrain.Experiment(name="large", trainable="drift_population:DriftPopulation", paths=[os.path.join(ROOT, "benchmarks")],
                        metric="score", mode="max", population=store_members, steps=2,
                        space={"target": poptrain.Uniform(0.0, 2.0)}, storage=url, seed=0).run(engine="vectorized")
    best = [m.id for m in poptrain.load(url, "large").best_members()][:SHOWN_MEMBERS]
    code, out, err = cli("status", "--storage", url, "--experiment", "large")
    assert code == 0, err
    rows = [int(line.split("│")[1]) for line in out.split("exploits so far")[0].splitlines() if line.startswith("│")]
    assert rows == best and f"best of {store_members} members" in out  # best first, the rest left out
    code, out, err = cli("status", "--storage", url, "--experiment", "large", "--all")
    rows = [int(line.split("│")[1]) for line in out.split("exploits so far")[0].splitlines() if line.startswith("│")]
    assert code == 0 and rows == list(range(store_members)), err
