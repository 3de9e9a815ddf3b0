"""A trainable defined where the local engine's workers cannot import it: a notebook cell, `python -c`,
a script on standard input, a script without the `if __name__ == "__main__":` guard. Each trains on the
default (local) engine with 2 workers, every member reaches its budget, and nothing re-runs the user's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

STEPS, POPULATION = 6, 4

SCRIPT = '''
import poptrain
print("SCRIPT STARTED", flush=True)

class Toy(poptrain.Trainable):
    def __init__(self, hparams, seed):
        super().__init__(hparams, seed)
        self.x = 0.0
    def train(self):
        self.x += self.hparams["lr"]
    def evaluate(self):
        return self.x
    def state_dict(self):
        return {{"x": self.x}}
    def load_state_dict(self, state):
        self.x = state["x"]

experiment = poptrain.Experiment(name="toy", trainable=Toy, space={{"lr": poptrain.Uniform(0.0, 1.0)}},
                                 population={population}, steps={steps}, ready=poptrain.Every(2),
                                 storage="sqlite:///{db}")
result = experiment.run(workers=2)   # the default engine: local
members = result.members()
print("FINISHED", sorted(set(members.status)), sorted(set(members.step)), len(result.frame()))
'''


def script(tmp_path: Path) -> str:
    return SCRIPT.format(population=POPULATION, steps=STEPS, db=tmp_path / "toy.db")


def check(output: str) -> None:
    assert "Traceback" not in output, output
    assert output.count("SCRIPT STARTED") == 1, output  # no worker ran the user's code again
    assert f"FINISHED ['done'] [{STEPS}] {POPULATION * STEPS}" in output, output


def run(command: list[str], tmp_path: Path, stdin: str | None = None) -> str:
    done = subprocess.run(command, cwd=tmp_path, input=stdin, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_python_dash_c(tmp_path):
    check(run([sys.executable, "-c", script(tmp_path)], tmp_path))


def test_script_on_standard_input(tmp_path):
    check(run([sys.executable, "-"], tmp_path, stdin=script(tmp_path)))


def test_script_without_a_main_guard(tmp_path):
    path = tmp_path / "unguarded.py"
    path.write_text(script(tmp_path))
    check(run([sys.executable, str(path)], tmp_path))


def test_notebook_cell(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(script(tmp_path))])
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    check("".join(o.get("text", "") for o in outputs))


FUNCTION_CELL = '''
import poptrain
print("SCRIPT STARTED", flush=True)

def train(member):                      # the whole training loop, as the user writes it
    x = 0.0 if member.state is None else member.state["x"]
    while member.running:
        x += member.hparams["lr"]
        decision = member.report(x, state={{"x": x}})
        if isinstance(decision, poptrain.Exploit):
            x = decision.state["x"]

result = poptrain.Experiment(name="fn", trainable=train, space={{"lr": poptrain.Uniform(0.0, 1.0)}},
                             population={population}, steps={steps}, ready=poptrain.Every(2),
                             storage="sqlite:///{db}").run(workers=2)
members = result.members()
print("FINISHED", sorted(set(members.status)), sorted(set(members.step)), len(result.frame()))
'''


def test_notebook_cell_with_a_function_trainable(tmp_path):
    cell = FUNCTION_CELL.format(population=POPULATION, steps=STEPS, db=tmp_path / "fn.db")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    check("".join(o.get("text", "") for o in outputs))
