"""report.html in a real browser: headless chromium renders the stored report to a PNG that is not blank.

Skipped where no chromium is installed (`apt-get install chromium`); `nox -s report_screenshot` or
`python scripts/screenshot_report.py OUTDIR` make the same picture by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from screenshot_report import find_browser, screenshot  # noqa: E402

from modelforge.report.html import render_html  # noqa: E402

STORED = Path(__file__).parent / "data" / "report_digits.json"

pytestmark = pytest.mark.skipif(find_browser() is None, reason="no chromium installed")


def test_chromium_renders_the_report(tmp_path):
    from PIL import Image

    html = tmp_path / "report.html"
    html.write_text(render_html(json.loads(STORED.read_text())))
    png = screenshot(html, tmp_path / "report.png", width=1280, height=2400)
    with Image.open(png) as image:
        assert image.size == (1280, 2400)
        rgb = image.convert("RGB")
        # Charts and tables draw many colours; an empty or error page has a handful.
        top = rgb.crop((0, 0, 1280, 1200))
        assert len(top.getcolors(maxcolors=1 << 16) or []) > 200
        # The verdict badge (green) is drawn in the top right corner.
        badge = rgb.crop((960, 0, 1280, 120))
        greens = [c for n, c in badge.getcolors(maxcolors=1 << 16) if c[1] > 150 and c[0] < 120 and c[2] < 160]
        assert greens, "no green PASSED badge in the top right corner"
