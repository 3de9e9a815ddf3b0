"""The benchmarks run end to end, their GPU sections included (on the CPU, at toy sizes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def smoke(tmp_path: Path, script: str, *flags: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """benchmarks/SCRIPT --smoke run in a fresh process from `tmp_path`; it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", *flags], capture_output=True,
                         text=True, timeout=timeout, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    return out


def test_vectorized_benchmark_prints_every_figure(tmp_path):
    out = smoke(tmp_path, "vectorized.py")
    text = out.stdout
    assert float(re.search(r"vectorized / local: ([\d.]+)x", text).group(1)) > 0
    assert float(re.search(r"vectorized in 2 shards / local: ([\d.]+)x", text).group(1)) > 0
    assert re.search(r"8 members on (cuda|cpu): +[\d.]+ member-intervals/s = [\d.]+x the local engine", text)
    assert re.search(r"mean best accuracy: local 0\.\d+, vectorized 0\.\d+", text)
    assert len(re.findall(r"members in one batched epoch: .* faster than", text)) == 3
    assert re.search(r"compiled [\d.]+ ms = [\d.]+x faster|torch.compile failed here", text)


def test_variants_benchmark_prints_every_section(tmp_path):
    out = smoke(tmp_path, "variants.py")
    text = out.stdout
    assert re.search(r"PB2 decision at 64 members and 1,024 recorded intervals: \d+ ms", text)
    assert re.search(r"PB2 beat PBT in [01] of 1 seeds", text)
    assert re.search(r"FIRE's final loss was at most PBT's in [01] of 1 seeds", text)
    assert re.search(r"PBT was greedy .* in [01] of 1 seeds", text)
    assert re.search(r"multi-objective PBT's hypervolume beat random search's in [01] of 1 seeds", text)
    assert re.search(r"\| 0 \| 0\.\d+ M \| 10 \| 0\.\d+ \| 1 \| 0\.\d+ \| (SGD|neuroevolution) \|", text)
    assert "lives in the script" not in out.stderr  # every trainable is importable by workers


def run_gpu_benchmark(tmp_path: Path, *flags: str) -> dict:
    out = smoke(tmp_path, "gpu.py", "--out", "gpu", *flags)
    assert (tmp_path / "gpu" / "results.md").read_text().count("\n| ") == len(re.findall(r"members (eager|bf16|compiled)", out.stdout)) + 1
    return json.loads((tmp_path / "gpu" / "results.json").read_text())


def test_gpu_benchmark_smoke_measures_every_section_and_mode(tmp_path):
    results = run_gpu_benchmark(tmp_path)
    rows = results["results"]
    assert results["meta"]["smoke"] and results["meta"]["compile_backend"] == "aot_eager"
    assert [r for r in rows if "error" in r or "skipped" in r] == []
    got = {(r["task"], r["mode"], r["figure"]) for r in rows}
    for mode in ("eager", "bf16", "compiled"):
        for task in ("mlp_digits", "cnn_digits"):
            assert {(task, mode, "step"), (task, mode, "run")} <= got
        assert {("CartPole-v1", mode, "rl"), ("Acrobot-v1", mode, "rl")} <= got
    for r in rows:
        assert r["bytes_per_member"] > 0 and r["memory"].startswith("estimate")  # no CUDA here
        if r["figure"] == "step":
            assert r["batched_ms"] > 0 and r["one_model_ms"] > 0 and r["vs_separate"] > 0
        elif r["figure"] == "run":
            assert r["member_intervals_per_s"] > 0
        else:
            assert r["env_steps_per_s"] > 0 and r["vs_one_agent"] > 0
        assert (r.get("compile_s") is not None) == (r["mode"] == "compiled" and r["figure"] != "run")


def test_gpu_benchmark_skips_what_its_budget_does_not_reach(tmp_path):
    rows = run_gpu_benchmark(tmp_path, "--budget", "0")["results"]
    assert len(rows) > 10 and all(r["skipped"] == "time budget" for r in rows)

def test_distributed_benchmark_prints_its_ratio_and_the_cost_inside_tell(tmp_path):
    out = smoke(tmp_path, "distributed.py", timeout=300)
    text = out.stdout
    assert "2 members x 4 intervals of 2 DDP batches" in text
    assert float(re.search(r"ratio poptrain/bare ([\d.]+)x", text).group(1)) > 0
    tell = re.search(r"inside tell per interval: rank 0 ([\d.]+) ms, rank 1 ([\d.]+) ms", text)
    assert tell and float(tell.group(1)) > 0 and float(tell.group(2)) > 0  # both ranks took part in every tell


def test_scale_benchmark_smoke_measures_every_reader_on_both_stores(tmp_path):
    out = smoke(tmp_path, "scale.py", timeout=300)
    text = out.stdout
    for store in ("sqlite", "postgresql"):
        section = text.split(f"{store}: ")[1]
        assert section.startswith("20 members x 20 intervals = 400 reports")
        for figure in (r"poptrain status: [\d.]+ s", r"exploit decision: median [\d.]+ ms, p99 [\d.]+ ms",
                       r"poptrain report: [\d.]+ s .*, [\d.]+ MB", r"dashboard: experiments list [\d.]+ s",
                       r"Result.frame\(\): [\d.]+ s, 400 rows", r"store: \d+ MB on disk, \d+ bytes a report"):
            assert re.search(figure, section), (figure, section)


def test_dashboard_benchmark_compares_a_poll_with_the_whole_run(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", ["dashboard.py", "--smoke"])  # in this process: its imports are loaded already
    runpy.run_path(str(ROOT / "benchmarks" / "dashboard.py"), run_name="__main__")
    text = capsys.readouterr().out
    sizes = [float(x) for x in re.findall(r": [\d.]+ s, ([\d.]+) MB", text)]
    assert len(sizes) == 3 and sizes[1] < sizes[0] and sizes[2] < sizes[1]  # whole run > one new interval > nothing
    assert re.search(r"poll / whole run: [\d.]+x the time, [\d.]+x the bytes", text)
