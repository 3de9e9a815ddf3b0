"""A Result in Jupyter: a real kernel displays its summary table and figures, with everything stored escaped."""

from __future__ import annotations

import html
import json
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
PLOTLY = "application/vnd.plotly.v1+json"
sys.path.insert(0, str(TESTS / "security"))

from payloads import FAILURE, HPARAM, IMG, METRIC, SCRIPT, payload_experiment  # noqa: E402

SETUP = '''
import sys
sys.path[:0] = [{src!r}, {tests!r}, {security!r}]
import poptrain
from trainables import Quadratic
result = poptrain.Experiment(name="nb", trainable=Quadratic, space={{"lr": poptrain.LogUniform(0.01, 0.5)}},
                             metric="score", population=4, steps=6, ready=poptrain.Every(2), seed=1,
                             storage="sqlite:///{db}").run(engine="serial")
'''
PAYLOAD = '''
from payloads import payload_experiment
payload = payload_experiment("sqlite:///{db}")
'''


def execute(cells: list[str], path: Path) -> list[list[dict]]:
    """Run the cells in a fresh python3 kernel; each cell's outputs (no cell may raise)."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path)}}).execute()
    outputs = [cell.outputs for cell in notebook.cells]
    errors = [o for cell in outputs for o in cell if o.output_type == "error"]
    assert not errors, errors
    return outputs


def html_of(outputs: list[dict]) -> list[str]:
    return [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})
            and PLOTLY not in o["data"]]


def titles(outputs: list[dict]) -> list[str]:
    return [o["data"][PLOTLY]["layout"]["title"]["text"] for o in outputs if PLOTLY in o.get("data", {})]


def test_a_result_shows_its_table_and_figures_in_a_notebook(tmp_path: Path) -> None:
    setup = SETUP.format(src=str(SRC), tests=str(TESTS), security=str(TESTS / "security"), db=tmp_path / "nb.db")
    payload = PAYLOAD.format(db=tmp_path / "payload.db")
    shown, plotted, one, bad, bad_plots = execute(
        [setup + "result", "result.plot()", "result.plot()['lineage']", payload + "payload", "payload.plot()"],
        tmp_path)
    tables = html_of(shown)
    assert len(tables) == 1 and "<table>" in tables[0] and "PBT experiment nb" in tables[0]
    assert "members by score (max), best first" in tables[0] and tables[0].count("<tr>") == 1 + 4
    assert "24/24 intervals trained" in tables[0]
    assert [t.split(" (")[0] for t in titles(shown)] == ["Score of every member", "Hyperparameter schedules"]
    assert [t.split(":")[0].split(" (")[0] for t in titles(plotted)] == [
        "Score of every member", "The winning lineage", "Hyperparameter schedules", "Hyperparameters against score",
        "Lineage tree"]
    assert titles(one)[0].startswith("The winning lineage")
    figure = next(o["data"][PLOTLY] for o in one if PLOTLY in o.get("data", {}))
    assert len(figure["data"]) == 2 and figure["data"][1]["name"] == "copy (exploit)"
    # a store's names, Choice values and failures reach the table escaped and the figures as Plotly's escaped text
    page = html_of(bad)[0]
    for raw in (IMG, SCRIPT, "<svg"):
        assert raw not in page
    assert html.escape(HPARAM) in page and html.escape(IMG) in page and html.escape(METRIC) in page
    assert "failed" in page
    figures = json.dumps([o["data"] for o in bad + bad_plots if PLOTLY in o.get("data", {})])
    assert figures and IMG not in figures and SCRIPT not in figures and FAILURE not in figures
    assert json.dumps(html.escape(METRIC, quote=False))[1:-1] in figures


def test_the_table_is_the_result_s_html_outside_a_kernel(tmp_path: Path) -> None:
    result = payload_experiment(f"sqlite:///{tmp_path}/p.db")
    page = result._repr_html_()
    assert IMG not in page and SCRIPT not in page and html.escape(HPARAM) in page
    assert page.count("<tr>") == 1 + 4 and "status" in page and repr(result).startswith("<poptrain.Result 'payload'")
    assert os.path.basename(str(tmp_path)) in repr(result)
