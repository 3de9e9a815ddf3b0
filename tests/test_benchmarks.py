"""The vectorized benchmark runs end to end, its GPU sections included (on the CPU, at toy sizes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_vectorized_benchmark_prints_every_figure(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vectorized.py"), "--smoke"], capture_output=True,
                         text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert float(re.search(r"vectorized / local: ([\d.]+)x", text).group(1)) > 0
    assert re.search(r"8 members on (cuda|cpu): +[\d.]+ member-intervals/s = [\d.]+x the local engine", text)
    assert re.search(r"mean best accuracy: local 0\.\d+, vectorized 0\.\d+", text)
    assert len(re.findall(r"members in one batched epoch: .* faster than", text)) == 3
    assert re.search(r"compiled [\d.]+ ms = [\d.]+x faster|torch.compile failed here", text)
