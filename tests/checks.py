"""What several test modules share: assertions about a finished run, and the CLI run in this process."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any, Iterator

import poptrain
from poptrain.cli import main
from poptrain.store import CheckpointStore


def assert_consistent_lineage(result: poptrain.Result, steps: int) -> None:
    """Every member done at `steps`, one report per step, and every copied source checkpoint verifies."""
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {steps}
    assert all(sorted(s) == list(range(1, steps + 1)) for s in result.frame().groupby("member").step.apply(list))
    files = CheckpointStore(result.spec["checkpoints"])
    assert result.events()
    for ev in result.events():
        sources = [c for c in result.store.checkpoints(result.name, ev.source) if c.step == ev.source_step]
        assert sources, ev
        for c in sources:
            files.load(c.key, c.checksum)  # raises CorruptCheckpoint if it does not match


def cli(*argv: Any) -> tuple[int, str, str]:
    """Run `poptrain ARGV` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """Whether a local server answers `url` with 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


CHROMIUM = "/usr/bin/chromium"


def chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    assert os.path.exists(CHROMIUM), "the browser test needs Debian's chromium: `make test` installs it"
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])


@contextmanager
def dashboard_server(url: str) -> Iterator[str]:
    """`poptrain dashboard` over the store at `url`, in its own process: its base URL, once it answers."""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "poptrain", "dashboard", "--storage", url, "--port", str(port)],
                              env={**os.environ, "PYTHONPATH": src}, start_new_session=True, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while not answers(f"{base}/") and time.time() < deadline:
            time.sleep(0.1)
        yield base
    finally:
        os.killpg(server.pid, 9)
        server.wait(10)


def reported(storage: str, metrics: dict[str, float], hparams: dict[str, float], members: int = 2,
             steps: int = 2) -> str:
    """Experiment 'q' created in `storage`, each member reporting `metrics` and `hparams` at steps 1..steps."""
    from poptrain.store import open_store
    from trainables import Quadratic

    poptrain.Experiment(name="q", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.001, 0.5)},
                        metric="score", population=members, steps=5, storage=storage, seed=1).create()
    store = open_store(storage)
    now = time.time()
    for _ in range(members):
        member = store.claim("q", "w", 60, now, barrier=False)
        for step in range(1, steps + 1):
            store.report("q", member.id, "w", step, 0.5, metrics, hparams, now + step)
    store.close()
    return storage
