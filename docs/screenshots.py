"""Take the docs' pictures of the report and the dashboard (docs/images/*.png) from the demo's run.

    PYTHONPATH=src .venv/bin/python docs/screenshots.py

Trains the demo (examples/mlp_digits.toml and its random-search baseline) into a temporary store,
writes the report of both and of PBT alone, serves the dashboard on 127.0.0.1, and photographs
them with Debian's Chromium (/usr/bin/chromium, headless; never a downloaded browser).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"


def poptrain(*args: str) -> None:
    """Run the `poptrain` command of this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-m", "poptrain", *args], check=True, env=env, timeout=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    """Wait until `url` answers, at most `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the dashboard did not answer at {url} within {seconds:.0f} s")


def drawn(page: Page, figures: int) -> None:
    """Wait until `figures` Plotly figures are drawn, and for their transitions to settle."""
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {figures}", timeout=60000)
    page.wait_for_timeout(800)


def shoot(page: Page, name: str, selector: str | None = None) -> None:
    """Save the page (or one element of it) as docs/images/NAME.png."""
    target = page.locator(selector) if selector else page
    target.screenshot(path=str(IMAGES / f"{name}.png"), **({} if selector else {"full_page": False}))
    print(f"wrote docs/images/{name}.png")


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="poptrain-screenshots-"))
    url = f"sqlite:///{folder}/demo.db"
    poptrain("run", str(ROOT / "examples" / "mlp_digits.toml"), "--storage", url, "--baseline", "--quiet")
    poptrain("report", "--storage", url, "--experiment", "mlp_digits", "--experiment", "mlp_digits-baseline",
             "-o", str(folder / "compare.html"))
    poptrain("report", "--storage", url, "--experiment", "mlp_digits", "-o", str(folder / "report.html"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "poptrain", "dashboard", "--storage", url, "--port", str(port)],
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.DEVNULL,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1150, "height": 1300})
            page.goto((folder / "compare.html").as_uri())
            drawn(page, 2)
            shoot(page, "report-compare")
            page.goto((folder / "report.html").as_uri())
            drawn(page, 5)
            shoot(page, "report-hparams", "div.chart[data-figure=hparams]")
            page.goto(f"{base}/")
            page.check("input.pick[value='mlp_digits']")
            page.check("input.pick[value='mlp_digits-baseline']")
            page.click("#compare")
            drawn(page, 2)
            shoot(page, "dashboard-compare")
            page.goto(f"{base}/experiments/mlp_digits?status=done&member=0,3,5")
            drawn(page, 5)
            page.wait_for_function("() => document.getElementById('shown').textContent !== ''", timeout=30000)
            shoot(page, "dashboard-experiment")
            browser.close()
    finally:
        os.killpg(server.pid, 9)
        server.wait(10)


if __name__ == "__main__":
    main()
