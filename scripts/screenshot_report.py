"""Render report.html in a real headless browser (Debian's chromium) and save a PNG screenshot.

    python scripts/screenshot_report.py OUTDIR_OR_REPORT_JSON [--png out/report.png] [--width 1280 --height 2400]

Re-renders the HTML from report.json first, so the screenshot shows what this checkout's renderer draws.
The browser runs with networking features off and a throw-away profile; a page that needed the network
would show it as missing pieces in the picture. Exits 2 when no chromium is installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2400, timeout: float = 90) -> Path:
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no chromium found (apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelforge-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot")
    return png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="output directory or report.json")
    parser.add_argument("--png", type=Path, default=Path("out/report.png"))
    parser.add_argument("--html", type=Path, default=None, help="where to write the re-rendered HTML")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args()

    from modelforge.report.html import render_html

    source = args.report / "report.json" if args.report.is_dir() else args.report
    html = args.html or args.png.with_suffix(".html")
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(render_html(json.loads(source.read_text())))
    if find_browser() is None:
        print("no chromium found: apt-get install chromium", file=sys.stderr)
        return 2
    screenshot(html, args.png, args.width, args.height)
    print(f"{args.png} ({args.png.stat().st_size} bytes) from {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
