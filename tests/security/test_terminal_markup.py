"""Terminal output escapes rich markup in names: `acc[/]` neither crashes `run` or `status` nor shows altered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calls import HERE
from checks import cli
from payloads import MARKUP_CHOICES, MARKUP_DROPOUT, MARKUP_LR, MARKUP_METRIC
from poptrain.engines.progress import ProgressDisplay

SPEC = f"""
name = "markup"
trainable = "payloads:Markup"
paths = [{json.dumps(HERE)}]
metric = {json.dumps(MARKUP_METRIC)}
population = 4
steps = 6
seed = 1
[space]
{json.dumps(MARKUP_LR)} = {{type = "uniform", low = 0.05, high = 0.5}}
{json.dumps(MARKUP_DROPOUT)} = {{type = "choice", values = {json.dumps(list(MARKUP_CHOICES))}}}
[ready]
type = "every"
intervals = 2
"""


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")  # rich wraps at the terminal's width: room for every name on one line


def test_run_and_status_show_markup_names_literally(tmp_path: Path, wide: None) -> None:
    spec = tmp_path / "markup.toml"
    spec.write_text(SPEC)
    url = f"sqlite:///{tmp_path}/m.db"
    code, out, err = cli("run", spec, "--storage", url, "--engine", "serial")  # with the progress bar
    assert code == 0, err
    assert "MarkupError" not in err and "Traceback" not in err
    assert f"markup: best members ({MARKUP_METRIC}, max)" in out  # the table title, as it is
    assert f"{MARKUP_LR}=" in out and f"{MARKUP_DROPOUT}=" in out
    code, out, err = cli("status", "--storage", url, "--experiment", "markup")
    assert code == 0, err
    assert f"{MARKUP_LR}=" in out and f"{MARKUP_DROPOUT}=" in out
    assert any(value in out for value in MARKUP_CHOICES)
    header = next(line for line in out.splitlines() if "score at end" in line)  # the best member's schedule
    assert MARKUP_LR in header and MARKUP_DROPOUT in header
    code, out, err = cli("status", "--storage", url)
    assert code == 0 and "markup" in out, err


def test_the_progress_bar_shows_a_markup_name_as_it_is() -> None:
    display = ProgressDisplay(store=None, name="run[/]", mode="max", enabled=True)  # type: ignore[arg-type]
    assert display._bar is not None
    description = display._bar.columns[0].render(display._bar.tasks[0])
    assert description.plain == "run[/]"
