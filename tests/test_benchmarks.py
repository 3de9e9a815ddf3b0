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


def test_variants_benchmark_prints_every_section(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "variants.py"), "--smoke"], capture_output=True,
                         text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"PB2 decision at 64 members and 1,024 recorded intervals: \d+ ms", text)
    assert re.search(r"PB2 beat PBT in [01] of 1 seeds", text)
    assert re.search(r"FIRE's final loss was at most PBT's in [01] of 1 seeds", text)
    assert re.search(r"PBT was greedy .* in [01] of 1 seeds", text)
    assert re.search(r"multi-objective PBT's hypervolume beat random search's in [01] of 1 seeds", text)
    assert re.search(r"\| 0 \| 0\.\d+ M \| 10 \| 0\.\d+ \| 1 \| 0\.\d+ \| (SGD|neuroevolution) \|", text)
    assert "lives in the script" not in out.stderr  # every trainable is importable by workers


def test_distributed_benchmark_prints_its_ratio_and_the_cost_inside_tell(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "distributed.py"), "--smoke"], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "2 members x 4 intervals of 2 DDP batches" in text
    assert float(re.search(r"ratio poptrain/bare ([\d.]+)x", text).group(1)) > 0
    tell = re.search(r"inside tell per interval: rank 0 ([\d.]+) ms, rank 1 ([\d.]+) ms", text)
    assert tell and float(tell.group(1)) > 0 and float(tell.group(2)) > 0  # both ranks took part in every tell
