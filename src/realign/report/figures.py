"""The report's charts, what every one shares: the :class:`Figure` a section shows, the colours and
the style, and drawing with matplotlib's Agg renderer (no display needed), one PNG each. The
charts: rates before and after (:mod:`.rate_figures`), what the stages wrote
(:mod:`.stage_figures`), a judge's calibration (:mod:`.calibration_figure`) and what each run
changed (:mod:`.change_figures`)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

BASELINE_COLOUR = "#9a9a9a"
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
TRIAGE_COLOURS = {"INVERT": "#1f77b4", "PUNISH": "#d62728", "RETAIN": "#2ca02c"}


@dataclass
class Figure:
    """A rendered chart: file name stem, title, alt text and PNG bytes."""

    name: str
    title: str
    alt: str
    png: bytes


_STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "figure.dpi": 110,
    "savefig.dpi": 110,
}


def new_figure(width: float, height: float):
    """A blank figure of ``width`` x ``height`` inches, laid out by matplotlib (no pyplot: no display)."""
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def render(draw) -> bytes:
    """The PNG of the figure ``draw()`` returns, drawn in the report's style."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        return _png(draw())


def series_colours(series: Sequence[tuple[str, bool]]) -> list[str]:
    """One colour per (label, is_baseline) series: grey for a baseline, the run colours in turn for the rest."""
    out, k = [], 0
    for _, is_baseline in series:
        if is_baseline:
            out.append(BASELINE_COLOUR)
        else:
            out.append(RUN_COLOURS[k % len(RUN_COLOURS)])
            k += 1
    return out
