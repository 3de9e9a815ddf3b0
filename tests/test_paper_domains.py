"""benchmarks/paper_domains.py --smoke: both domains, both sides of the comparison, the reports and schedules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_paper_domains_benchmark_prints_every_section(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_domains.py"), "--smoke", "--out",
                          str(tmp_path / "reports")], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    accuracy, ceiling = re.search(r"accuracy (0\.\d+) on held-out digits; real held-out digits score ([\d.]+)", text).groups()
    assert float(accuracy) > 0.95 and 8.5 < float(ceiling) < 10
    for domain in ("gan_digits", "translation"):
        assert re.search(rf"{domain} seed 0: PBT best [\d.]+ mean [\d.]+ \| random search best [\d.]+ mean [\d.]+", text)
        assert re.search(rf"{domain}: PBT's best beat random search's best in [01] of 1 seeds", text)
        report = tmp_path / "reports" / f"{domain}.html"
        assert f"report of seed 0's PBT run: {report}" in text and report.stat().st_size > 10_000
    assert re.search(r"from step \d+: lr_d=[\d.e-]+, lr_g=[\d.e-]+", text)
    assert re.search(r"from step \d+: dropout=[\d.e-]+, label_smoothing=[\d.e-]+, lr=[\d.e-]+", text)
