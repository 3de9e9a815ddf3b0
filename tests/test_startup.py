"""Training pulls in only what it uses: pandas loads when a frame is asked for, scikit-learn never."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from poptrain.experiment import load_spec
result = load_spec("{root}/examples/mlp_digits.toml", storage="sqlite:///{tmp}/s.db", population=2,
                   steps=2).run(engine="vectorized")
assert result.best().score > 0
print(sorted(m for m in ("pandas", "sklearn", "scipy") if m in sys.modules))
assert len(result.members()) == 2
print("pandas" in sys.modules)
"""


def test_a_run_and_its_best_member_need_neither_pandas_nor_scikit_learn(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=ROOT, tmp=tmp_path)], capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
