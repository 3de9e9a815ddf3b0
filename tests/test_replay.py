"""Replay: one member retrained from scratch on the schedule PBT found (issue 4, acceptance 4)."""

from __future__ import annotations

import io
import uuid
from contextlib import redirect_stdout

import pytest

import poptrain
from poptrain.cli import main
from poptrain.experiment import load_spec
from poptrain.specfile import dump_spec
from conftest import EXAMPLES


@pytest.mark.parametrize("seed", [0, 3])
def test_toy_replay_reaches_the_pbt_winners_q(tmp_path, seed):
    pbt = load_spec(f"{EXAMPLES}/toy_quadratic.toml", storage=f"sqlite:///{tmp_path}/t.db", seed=seed).run(
        engine="serial")
    best = pbt.best()
    assert pbt.lineage(best.id).shape[0] > 0  # the winner descends from exploits: the schedule changes
    spec_file = tmp_path / "replay.toml"
    spec_file.write_text(dump_spec(pbt.replay_spec()))
    replay = load_spec(spec_file).run(engine="serial")
    assert replay.best().score == pytest.approx(best.score, abs=1e-6)
    # the replay trained with the stitched schedule, age for age
    curve = pbt.winning_lineage()
    trained = replay.schedule(0)
    assert trained[["h0", "h1"]].values.tolist() == curve[["h0", "h1"]].values.tolist()


def test_replay_spec_round_trips_through_toml(tmp_path):
    pbt = load_spec(f"{EXAMPLES}/toy_quadratic.toml", storage=f"memory://{uuid.uuid4().hex}", steps=40).run(
        engine="serial")
    spec = pbt.replay_spec()
    again = load_spec_from_text(tmp_path, dump_spec(spec))
    assert again.schedule == spec["schedule"] and again.member_seeds == spec["member_seeds"]
    assert again.exploit is None and again.population == 1 and again.steps == 40


def load_spec_from_text(tmp_path, text: str) -> poptrain.Experiment:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return load_spec(path)


def test_mlp_digits_replay_is_reported_beside_the_pbt_member(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=url, population=4, steps=9).run(engine="serial")
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["replay", "--storage", url, "--experiment", "mlp_digits", "-o", str(tmp_path / "r.toml"),
                     "--quiet"]) == 0
    pbt, replay = poptrain.load(url, "mlp_digits"), None
    name = [n for n in pbt.store.experiments() if n.startswith("mlp_digits-replay-")][0]
    replay = poptrain.load(url, name)
    rows = {line.split("│")[1].strip(): line for line in out.getvalue().splitlines() if line.startswith("│")}
    assert set(rows) == {"PBT", "replay"}
    assert f"{replay.best().score:.4g}" in rows["replay"] and f"{pbt.best().score:.4g}" in rows["PBT"]


def test_bad_schedules_are_refused():
    base = dict(name="s", trainable="trainables:Quadratic", space={"lr": poptrain.LogUniform(0.01, 0.5)},
                metric="score", population=1, steps=10, storage=f"memory://{uuid.uuid4().hex}", exploit=None)
    with pytest.raises(poptrain.SpecError, match="start at step 0"):
        poptrain.Experiment(**base, schedule=[{"step": 3, "hparams": {"lr": 0.1}}])
    with pytest.raises(poptrain.SpecError, match=r"schedule\[0\].*'momentum'"):
        poptrain.Experiment(**base, schedule=[{"step": 0, "hparams": {"lr": 0.1, "momentum": 0.9}}])
    with pytest.raises(poptrain.SpecError, match="member_seeds"):
        poptrain.Experiment(**base, member_seeds=[1, 2])


def test_dump_spec_writes_names_and_values_toml_can_read(tmp_path):
    spec = {"name": "u", "trainable": "trainables:Quadratic", "metric": "score", "population": 1, "steps": 3,
            "space": {"λr": {"type": "loguniform", "low": 0.01, "high": 0.5},
                      "tag": {"type": "choice", "values": ["😀", 'say "hi"', [1, 2]]}},
            "paths": ["/a b/ç"]}
    path = tmp_path / "u.toml"
    path.write_text(dump_spec(spec), encoding="utf-8")
    from poptrain.specfile import read_toml

    data = read_toml(path)
    assert data["space"]["λr"]["low"] == 0.01 and data["space"]["tag"]["values"] == ["😀", 'say "hi"', [1, 2]]
    assert data["paths"] == ["/a b/ç"]


def test_a_replay_spec_keeps_the_checkpoints_only_where_its_store_has_no_default(monkeypatch):
    import pandas as pd

    from poptrain.analysis import replay_spec

    monkeypatch.delenv("POPTRAIN_CHECKPOINTS", raising=False)
    curve = pd.DataFrame({"age": [1, 2], "lr": [0.1, 0.2]})
    base = {"space": {"lr": {}}, "checkpoints": "s3://bucket/run", "initial": [{"lr": 0.1}]}
    shared = replay_spec({**base, "storage": "postgresql+psycopg://u:p@db/pbt"}, curve, 7, "run-replay-0")
    local = replay_spec({**base, "storage": "sqlite:///runs/x.db"}, curve, 7, "run-replay-0")
    assert shared["checkpoints"] == "s3://bucket/run" and "initial" not in shared  # a shared store has no default
    assert "checkpoints" not in local and "initial" not in local  # beside the SQLite file, as for any run there
