"""The report as a reader sees it (issue 33 item 6): rendered by headless Chromium
(tools/report_screenshot.py), its text extracted from the rendered page. Skipped where no
Chromium is installed (``apt-get install chromium``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from realign.report import build_report
from test_report import _change_layout, decode_png

TOOL = Path(__file__).resolve().parents[1] / "tools" / "report_screenshot.py"


def _tool():
    spec = importlib.util.spec_from_file_location("report_screenshot", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shot = _tool()
CHROMIUM = shot.find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium, or set $CHROMIUM)")


def test_the_rendered_report_opens_with_its_summary_and_lists_the_regression(tmp_path):
    run = _change_layout(tmp_path)  # weapons/none falls 8/8 -> 0/8
    page = build_report([run], tmp_path / "report.html")
    text = shot.page_text(CHROMIUM, page)
    assert text.index("Summary") < text.index("Comparison") < text.index("Policy agreement by slice")
    assert "trace: on the 2 slices the policy changed, agreement went from 0.0% (0.0–19.4) to 87.5% (64.0–96.5)" in text
    assert "Regressions (1): weapons/none (100.0% → 0.0%)" in text
    regressions = text.split("Regressions Slice Changed by the policy")[1]
    assert regressions.lstrip().startswith("Before (95% CI) After (95% CI) Change, points (95% CI) weapons/none no")
    # the folded examples are on the page, behind their titles
    assert "trace: responses behind the regressions, compliant before and not after (2 of 8 shown)" in text
    png = shot.screenshot(CHROMIUM, page, tmp_path / "shot.png", 1280, 2400)
    image = decode_png(png.read_bytes())
    assert image.size == (1280, 2400)
    assert sum(1 for count in image.convert("L").histogram() if count) > 8  # something was drawn, not a blank page


def test_the_tool_exits_1_when_an_expected_text_is_missing(tmp_path):
    page = build_report([_change_layout(tmp_path)], tmp_path / "report.html")
    png = tmp_path / "s.png"
    assert shot.main([str(page), "--png", str(png), "--expect", "Summary", "--expect", "Regressions"]) == 0
    assert shot.main([str(page), "--png", str(png), "--expect", "no such text on the page"]) == 1
