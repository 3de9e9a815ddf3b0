"""The variants beyond the paper's policy (PB2, multi-objective, FIRE, neuroevolution) from TOML through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

import poptrain
from test_cli import cli, sqlite, toy_toml

NOISE = '[explore]\ntype = "noise"\nsigma = 0.1'


@pytest.mark.parametrize("engine", ["serial", "local"])
def test_pb2_runs_from_toml_and_the_cli(tmp_path: Path, engine: str) -> None:
    spec = toy_toml(tmp_path, {NOISE: '[explore]\ntype = "pb2"\ncandidates = 64', "steps = 200": "steps = 24"})
    url = sqlite(tmp_path / "pb2.db")
    code, out, err = cli("run", spec, "--storage", url, "--engine", engine, "--quiet")
    assert code == 0, err
    result = poptrain.load(url, "toy_quadratic")
    assert result.spec["explore"]["type"] == "pb2"
    events = result.events()
    assert events and all(0.0 <= e.new_hparams[k] <= 1.0 for e in events for k in ("h0", "h1"))
    # After the first decisions the GP has intervals to fit: explores leave the source's point.
    assert any(e.new_hparams != e.source_hparams for e in events)
