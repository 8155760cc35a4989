"""Look at a report as a reader does: render ``report.html`` in headless Chromium, save a
screenshot and the page's text (its DOM after rendering, tags stripped), and check that texts
are there.

    python tools/report_screenshot.py RUN/report.html --png shot.png --expect Summary --expect "Regressions"

Exit status 0 when every ``--expect`` text is on the rendered page, 1 when one is missing, 2 when
no Chromium is found (``apt-get install chromium``; or name one with ``--chromium`` or
``$CHROMIUM``). tests/test_report_browser.py runs the same checks on a report with a regression.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage")
TIMEOUT_S = 120


def find_chromium(name: str | None = None) -> str | None:
    """A Chromium binary: ``name``, else ``$CHROMIUM``, else the first of :data:`NAMES` on PATH."""
    for candidate in (name, os.environ.get("CHROMIUM"), *NAMES):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _chromium(binary: str, page: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium on ``page`` with its own throw-away profile (no state between runs)."""
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=True)


def screenshot(binary: str, page: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
    """A ``width`` x ``height`` screenshot of ``page`` (the top of it) at ``png``."""
    _chromium(binary, page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    return png


def page_text(binary: str, page: Path) -> str:
    """The rendered page's text: its DOM as Chromium built it, without tags or styles, spaces
    collapsed (folded ``<details>`` are in the DOM, so their text is too)."""
    dom = _chromium(binary, page, "--dump-dom").stdout
    dom = re.sub(r"<(head|style|script)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.html")
    parser.add_argument("--png", type=Path, default=Path("report_screenshot.png"), help="where the screenshot goes")
    parser.add_argument("--text", type=Path, help="also write the page's text here")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    parser.add_argument("--expect", action="append", default=[], help="text that must be on the page (repeatable)")
    parser.add_argument("--chromium", help="the Chromium binary (default: $CHROMIUM, else chromium on PATH)")
    args = parser.parse_args(argv)
    binary = find_chromium(args.chromium)
    if binary is None:
        print("no Chromium found: apt-get install chromium, or give --chromium / $CHROMIUM", file=sys.stderr)
        return 2
    if not args.report.is_file():
        print(f"{args.report}: not a file", file=sys.stderr)
        return 2
    screenshot(binary, args.report, args.png, args.width, args.height)
    text = page_text(binary, args.report)
    if args.text:
        args.text.write_text(text + "\n", encoding="utf-8")
    missing = [e for e in args.expect if e not in text]
    for e in missing:
        print(f"missing on the rendered page: {e!r}", file=sys.stderr)
    print(f"{args.png} ({args.width}x{args.height}); {len(text)} characters of text; "
          f"{len(args.expect) - len(missing)} of {len(args.expect)} expected texts found")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
