"""benchmarks/rl.py runs end to end at toy sizes, its CUDA sections (on the CPU) and the off-policy one included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_rl_benchmark_smoke_prints_every_figure(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rl.py"), "--smoke"], capture_output=True,
                         text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert len(re.findall(r"seed 0: PBT best +-?[\d.]+ mean +-?[\d.]+ \| random search best", text)) == 4 + 2  # A2C, PPO
    for task in ("CartPole-v1", "Acrobot-v1"):
        for engine in ("local", "vectorized"):
            assert re.search(rf"{task} on the {engine} engine: PBT's mean final return beat random search's in \d of 1", text)
    assert len(re.findall(r"local \(2 workers\) +[\d.]+ env-steps/s; vectorized \(1 thread\) +[\d.]+ = +[\d.]+x; "
                          r"vectorized, 2 shards +[\d.]+ = +[\d.]+x", text)) == 2 + 1  # A2C, PPO
    assert re.search(r"8 members on (cuda|cpu): +[\d.]+ env-steps/s = [\d.]+x the local engine", text)
    assert len(re.findall(r"members in one batched update: .* faster than", text)) == 6
    assert re.search(r"seed 0: PBT copy_buffer=True best +-?[\d.]+ mean +-?[\d.]+ \| PBT copy_buffer=False best +-?[\d.]+ "
                     r"mean +-?[\d.]+ \| random search best", text)
    for setting in ("True", "False"):
        assert re.search(rf"Pendulum-v1, TD3, PBT with copy_buffer={setting}: .* beat random search's in \d of 1 seeds", text)
    for task in ("CartPole-v1", "Pendulum-v1"):
        assert re.search(rf"PPO on {task} on the vectorized engine: PBT's mean final return beat random search's in \d of 1", text)
    assert re.search(r"PPO on CartPole-v1, +2 members: local \(2 workers\) +[\d.]+ env-steps/s; vectorized \(1 thread\) +[\d.]+ = +[\d.]+x",
                     text)
