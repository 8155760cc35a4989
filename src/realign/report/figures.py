"""The report's charts: matplotlib's Agg renderer (no display needed), one PNG each."""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..data import CATEGORIES, CONFLICT
from ..metrics.stats import ci_of, number, rate_of
from .collect import Source

BASELINE_COLOUR = "#9a9a9a"
RATE_MAP, CHANGE_MAP = "cividis", "PuOr"
"""Colour maps of the change pictures, both readable with colour-blindness (and every value is
printed too, for greyscale and print): agreement 0-100 %, change -100 to +100 points."""
CHANGED_COLOUR, REGRESSION_COLOUR, OTHER_COLOUR = "#0072B2", "#D55E00", "#6f6f6f"
"""Forest plot markers (Okabe-Ito blue and vermillion): slices the policy changed, regressions."""
REGRESSION_MARK = "▼"
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


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _render(draw) -> bytes:
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        return _png(draw())


def _series_colours(series: Sequence[tuple[str, bool]]) -> list[str]:
    out, k = [], 0
    for _, is_baseline in series:
        if is_baseline:
            out.append(BASELINE_COLOUR)
        else:
            out.append(RUN_COLOURS[k % len(RUN_COLOURS)])
            k += 1
    return out


def _wrap(label: str, width: int = 13) -> str:
    return textwrap.fill(label.replace("_", " ") if len(label) > width else label, width) or label


DOT_PLOT_GROUPS = 12
"""With more groups than this, rates are drawn as a dot plot (groups as rows) instead of bars."""


def _rates(values: Sequence[Any], place) -> tuple[list[float], list[float], list[float], list[float], float]:
    """One series' rates in percent where present: each group's position ``place(g)``, its rate
    and its 95 % interval as the distances below and above the rate (zero without one); and the
    highest rate or interval end."""
    where, rates, err_lo, err_hi, top = [], [], [], [], 0.0
    for g, value in enumerate(values):
        r = rate_of(value)
        if r is None:
            continue
        where.append(place(g))
        rates.append(100 * r)
        interval = ci_of(value)
        lo, hi = (r, r) if interval is None else interval
        err_lo.append(max(0.0, 100 * (r - lo)))
        err_hi.append(max(0.0, 100 * (hi - r)))
        top = max(top, 100 * max(r, hi))
    return where, rates, err_lo, err_hi, top


def _dot_plot(title, panels, series, xlabel):
    """Groups as rows, one marker per series with its 95 % interval as a line."""
    n_series = len(series)
    sizes = [max(1, len(groups)) for _, groups, _ in panels]
    row_h = 0.2 + 0.04 * n_series
    fig = _new_figure(9.0, min(40.0, 1.2 + sum(sizes) * row_h + 0.5 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False, height_ratios=sizes)[:, 0]
    colours = _series_colours(series)
    spread = 0.72 / max(1, n_series)
    for ax, (subtitle, groups, values) in zip(axes, panels):
        for j, (label, is_baseline) in enumerate(series):
            ys, xs, err_lo, err_hi, _ = _rates(values[j], lambda g: g - 0.36 + spread * (j + 0.5))
            ax.errorbar(xs, ys, xerr=[err_lo, err_hi], fmt="D" if is_baseline else "o", color=colours[j],
                        markersize=4.5, elinewidth=0.9, capsize=0, label=label,
                        markeredgecolor="#555555" if is_baseline else colours[j])
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels(groups)
        ax.set_ylim(len(groups) - 0.5, -0.5)
        ax.grid(True, axis="x")
        ax.grid(False, axis="y")
        for g in range(1, len(groups)):
            ax.axhline(g - 0.5, color="#eeeeee", linewidth=0.6, zorder=0)
        ax.tick_params(axis="y", length=0)
        if subtitle:
            ax.set_title(subtitle, fontsize=10, fontweight="normal", color="#333333", loc="left")
    axes[-1].set_xlim(-2, 102)
    axes[-1].set_xlabel(xlabel)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)
    return fig


def _bars(ax, groups, values, series, colours) -> float:
    """One panel's bars, ``values[j][g]`` for series j and group g, with their 95 % intervals as
    error bars; returns the highest value or interval end drawn, in percent."""
    bar = 0.8 / max(1, len(series))
    top = 0.0
    for j, (label, is_baseline) in enumerate(series):
        xs, heights, err_lo, err_hi, highest = _rates(values[j], lambda g: g - 0.4 + bar * (j + 0.5))
        top = max(top, highest)
        ax.bar(xs, heights, bar * 0.9, label=label, color=colours[j], hatch="///" if is_baseline else None,
               edgecolor="#6f6f6f" if is_baseline else "white", linewidth=0.6)
        if any(err_lo) or any(err_hi):
            ax.errorbar(xs, heights, yerr=[err_lo, err_hi], fmt="none", ecolor="#333333", elinewidth=0.9,
                        capsize=2.5)
    return top


def grouped_bars(
    title: str,
    panels: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]],
    series: Sequence[tuple[str, bool]],
    ylabel: str,
    *,
    auto_ylim: bool = False,
) -> bytes:
    """Grouped bar charts of rates in percent, side by side sharing the y axis.

    ``panels``: (panel title, group names, values) where ``values[j][g]`` is series j's RATE
    object (or bare rate) for group g; ``series``: (label, is_baseline). 95 % intervals are
    drawn as error bars where present. The y axis runs 0-100 % unless ``auto_ylim``."""

    def draw():
        n_series = len(series)
        sizes = [max(1, len(groups)) for _, groups, _ in panels]
        total = sum(sizes)
        if total > DOT_PLOT_GROUPS:
            return _dot_plot(title, panels, series, ylabel)
        rotate = [len(groups) > 8 for _, groups, _ in panels]
        width = min(15.0, max(5.5, 1.0 + total * (0.22 * n_series + 0.35) + 0.4 * len(panels))) + 1.6
        height = 4.4 if any(rotate) else 3.8
        fig = _new_figure(width, height)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False, width_ratios=[s + 0.4 for s in sizes])[0]
        colours = _series_colours(series)
        top = 0.0
        for ax, (subtitle, groups, values), rot in zip(axes, panels, rotate):
            top = max(top, _bars(ax, groups, values, series, colours))
            ax.set_xticks(range(len(groups)))
            if rot:
                ax.set_xticklabels(groups, rotation=35, ha="right", rotation_mode="anchor")
            else:
                ax.set_xticklabels([_wrap(g) for g in groups])
            ax.set_xlim(-0.6, len(groups) - 0.4)
            ax.tick_params(axis="x", length=0)
            if subtitle:
                ax.set_title(subtitle, fontsize=10, fontweight="normal", color="#333333")
        axes[0].set_ylabel(ylabel)
        ymax = 105.0 if not auto_ylim else min(105.0, max(20.0, math.ceil((top + 8) / 10) * 10))
        axes[0].set_ylim(0, ymax)
        fig.suptitle(title, fontsize=11, fontweight="bold")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", frameon=False)
        return fig

    return _render(draw)


def impact_histograms(sources: Sequence[Source]) -> bytes:
    """One row per score stage, one panel per conflict category: the weight histogram."""

    def draw():
        rows = len(sources)
        fig = _new_figure(9.5, 2.8 * rows + 0.2)
        axes = fig.subplots(rows, len(CONFLICT), squeeze=False)
        for r, src in enumerate(sources):
            hist = src.data.get("histogram") or {}
            weights = src.data.get("weights") or {}
            for c, category in enumerate(CONFLICT):
                ax = axes[r][c]
                h = hist.get(category) or {}
                edges, counts = h.get("edges") or [], h.get("counts") or []
                stats = weights.get(category) or {}
                head = f"{src.label} — {category}" if rows > 1 else category
                if len(edges) != len(counts) + 1 or not counts:
                    ax.set_title(f"{head} (no records)")
                    ax.text(0.5, 0.5, "no scored records", ha="center", va="center", transform=ax.transAxes, color="#777777")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    continue
                widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
                ax.bar(edges[:-1], counts, width=widths, align="edge", color=TRIAGE_COLOURS[category],
                       edgecolor="white", linewidth=0.5)
                detail = []
                if isinstance(stats.get("n"), int):
                    detail.append(f"n={stats['n']}")
                if number(stats.get("mean")) is not None:
                    detail.append(f"mean {stats['mean']:.3g}")
                if number(stats.get("fraction_zero")) is not None:
                    detail.append(f"{100 * stats['fraction_zero']:.0f}% zero")
                ax.set_title(head + (f"\n{', '.join(detail)}" if detail else ""), fontsize=10)
                ax.set_xlabel("impact weight")
                ax.set_ylabel("records")
        return fig

    return _render(draw)


def triage_counts(sources: Sequence[Source]) -> bytes:
    """INVERT / PUNISH / RETAIN counts: one bar per category, grouped by triage run."""

    def draw():
        n = len(sources)
        fig = _new_figure(min(12.0, 4.6 + 1.6 * n), 3.1)
        ax = fig.add_subplot()
        if n == 1:
            counts = sources[0].data.get("counts") or {}
            values = [counts.get(c, 0) or 0 for c in CATEGORIES]
            bars = ax.bar(CATEGORIES, values, color=[TRIAGE_COLOURS[c] for c in CATEGORIES], width=0.6)
            total = sum(values)
            ax.bar_label(bars, labels=[f"{v} ({100 * v / total:.1f}%)" if total else str(v) for v in values], padding=2)
            ax.set_title(f"Triage of {total} pairs" + (f" — {sources[0].label}" if sources[0].label else ""))
        else:
            bar = 0.8 / len(CATEGORIES)
            for j, category in enumerate(CATEGORIES):
                xs = [g - 0.4 + bar * (j + 0.5) for g in range(n)]
                values = [(src.data.get("counts") or {}).get(category, 0) or 0 for src in sources]
                bars = ax.bar(xs, values, bar * 0.92, label=category, color=TRIAGE_COLOURS[category])
                ax.bar_label(bars, padding=2, fontsize=8)
            ax.set_xticks(range(n))
            ax.set_xticklabels([src.label for src in sources])
            ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            ax.set_title("Triage counts")
        ax.set_ylabel("pairs")
        ax.margins(y=0.15)
        return fig

    return _render(draw)


def loss_series(summary: dict) -> dict[str, tuple[list[float], list[float]]]:
    """component -> (steps, values) from a train summary's ``log_history``."""
    history = summary.get("log_history")
    out: dict[str, tuple[list[float], list[float]]] = {}
    if not isinstance(history, list):
        return out
    for entry in history:
        if not isinstance(entry, dict) or number(entry.get("step")) is None:
            continue
        for key, value in entry.items():
            if (key == "loss" or key.startswith("L_")) and number(value) is not None:
                steps, values = out.setdefault(key, ([], []))
                steps.append(float(entry["step"]))
                values.append(float(value))
    return out


def _component_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    head = [n for n in ("loss", "L_I", "L_II", "L_KL", "L_NLL") if n in names]
    return head + sorted(names - set(head))


COMPONENT_TITLES = {
    "loss": "total loss",
    "L_I": "L_I (INVERT, preference)",
    "L_II": "L_II (PUNISH)",
    "L_KL": "L_KL (RETAIN, KL)",
    "L_NLL": "L_NLL (anchor)",
}


def loss_curves(series: Sequence[tuple[str, dict[str, tuple[list[float], list[float]]]]]) -> bytes:
    """One panel per loss component, one line per run."""

    def draw():
        components = _component_order(name for _, curves in series for name in curves)
        cols = min(3, len(components))
        rows = math.ceil(len(components) / cols)
        fig = _new_figure(3.3 * cols, 2.8 * rows + (0.4 if len(series) > 1 else 0.0))
        axes = fig.subplots(rows, cols, squeeze=False)
        for i, name in enumerate(components):
            ax = axes[i // cols][i % cols]
            for j, (label, curves) in enumerate(series):
                if name not in curves:
                    continue
                steps, values = curves[name]
                ax.plot(steps, values, label=label, color=RUN_COLOURS[j % len(RUN_COLOURS)], linewidth=1.5,
                        marker="o" if len(steps) <= 12 else None, markersize=3)
            ax.set_title(COMPONENT_TITLES.get(name, name))
            ax.set_xlabel("step")
            ax.grid(True, axis="both")
        for i in range(len(components), rows * cols):
            axes[i // cols][i % cols].set_visible(False)
        if len(series) > 1:
            handles, labels = axes[0][0].get_legend_handles_labels()
            for ax in axes.flat:
                h, lab = ax.get_legend_handles_labels()
                for hh, ll in zip(h, lab):
                    if ll not in labels:
                        handles.append(hh)
                        labels.append(ll)
            fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), frameon=False)
        return fig

    return _render(draw)


def reliability_diagram(bins: Sequence[dict], ece: float, n: int) -> bytes:
    """A judge's P(compliant) against the labelled share compliant, one point per bin with its
    95 % interval (the diagonal is perfect calibration), and the responses per bin below.
    ``bins``: the ``calibration.bins`` of :func:`realign.judges.audit.calibration`."""

    def draw():
        fig = _new_figure(5.2, 5.4)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        top.plot([0, 1], [0, 1], linestyle="--", color=BASELINE_COLOUR, linewidth=1, label="perfect calibration")
        xs = [b["mean_p"] for b in bins]
        ys = [b["observed"]["rate"] for b in bins]
        lo = [max(0.0, y - b["observed"]["ci95"][0]) for y, b in zip(ys, bins)]
        hi = [max(0.0, b["observed"]["ci95"][1] - y) for y, b in zip(ys, bins)]
        top.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", color=RUN_COLOURS[0], markersize=5, elinewidth=0.9,
                     capsize=2.5, label="judge")
        top.set_xlim(-0.02, 1.02)
        top.set_ylim(-0.02, 1.02)
        top.set_ylabel("labelled compliant")
        top.grid(True, axis="both")
        top.legend(frameon=False, loc="upper left")
        top.set_title(f"Reliability of P(compliant): {n} responses, ECE {ece:.3f}")
        bottom.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["n"] for b in bins],
                   width=[0.9 * (b["hi"] - b["lo"]) for b in bins], color=RUN_COLOURS[0], alpha=0.7)
        bottom.set_xlabel("judge's P(compliant)")
        bottom.set_ylabel("responses")
        return fig

    return _render(draw)


# --------------------------------------------------------------------------- change pictures


def grid_of(names: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """(categories, contexts) when every slice is named ``category/context`` with at least two
    of each (a heat map's rows and columns, in order of appearance); else None."""
    parts = [str(n).split("/") for n in names]
    if not parts or any(len(p) != 2 or not all(p) for p in parts):
        return None
    categories, contexts = list(dict.fromkeys(p[0] for p in parts)), list(dict.fromkeys(p[1] for p in parts))
    return (categories, contexts) if len(categories) > 1 and len(contexts) > 1 else None


def _cell_text(value: float, signed: bool) -> str:
    text = f"{value:+.1f}" if signed else f"{value:.1f}"
    return text.replace(".0", "") if text.endswith(".0") else text


def _heat_panel(ax, fig, grid, values: dict, signed: bool, marks: dict, title: str, labels: bool) -> None:
    """One heat map: ``values[(category, context)]`` in percent (points if ``signed``), printed
    in its cell; ``marks``: cells framed (the policy changed them) or flagged (regressions)."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    categories, contexts = grid
    data = np.ma.masked_invalid([[values.get((c, x), np.nan) for x in contexts] for c in categories])
    cmap = colormaps[CHANGE_MAP if signed else RATE_MAP].with_extremes(bad="#f0f0f0")
    lo, hi = (-100, 100) if signed else (0, 100)
    image = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    for i, c in enumerate(categories):
        for j, x in enumerate(contexts):
            v = values.get((c, x))
            mark = marks.get((c, x))
            if v is None or v != v:
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="#777777")
                continue
            r, g, b, _ = cmap((v - lo) / (hi - lo))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            flag = f" {REGRESSION_MARK}" if mark == "regression" and signed else ""
            ax.text(j, i, _cell_text(v, signed) + flag, ha="center", va="center", fontsize=7.5,
                    color="white" if dark else "black", fontweight="bold" if mark else "normal")
            if mark:  # black with a white line inside: seen on dark cells and light ones
                style = "--" if mark == "regression" else "-"
                for inset, width, colour in ((0.04, 2.4, "black"), (0.12, 1.0, "white")):
                    ax.add_patch(Rectangle((j - 0.5 + inset, i - 0.5 + inset), 1 - 2 * inset, 1 - 2 * inset,
                                           fill=False, linewidth=width, edgecolor=colour, linestyle=style))
    ax.set_xticks(range(len(contexts)), contexts, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(categories)), categories if labels else [])
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, orientation="horizontal", shrink=0.85, aspect=25, pad=0.02,
                 label="change, points" if signed else "agreement, %")


def change_heat_maps(change) -> bytes:
    """Three heat maps of a :class:`~realign.report.changes.RunChange` whose slices are named
    ``category/context``: agreement before, after, and the change; the slices the policy
    changed framed, regressions framed dashed (and flagged in the change panel)."""
    grid = grid_of([s.name for s in change.slices])

    def cells(pick) -> dict:
        out = {}
        for s in change.slices:
            value = pick(s)
            if value is not None:
                out[tuple(s.name.split("/"))] = 100 * value
        return out

    marks = {tuple(s.name.split("/")): "regression" if s.regression else "changed"
             for s in change.slices if s.regression or s.changed}
    panels = [(f"before: {change.before.label}", cells(lambda s: rate_of(s.before)), False),
              (f"after: {change.row.label}", cells(lambda s: rate_of(s.after)), False),
              ("change (after - before)", cells(lambda s: s.diff[0] if s.diff else None), True)]

    def draw():
        categories, contexts = grid
        fig = _new_figure(1.1 + 3 * (0.62 * len(contexts) + 0.35), 1.9 + 0.36 * len(categories))
        axes = fig.subplots(1, 3)
        for k, (ax, (title, values, signed)) in enumerate(zip(axes, panels)):
            _heat_panel(ax, fig, grid, values, signed, marks, title, labels=k == 0)
        fig.suptitle("Agreement with the new policy by category and context", fontsize=11, fontweight="bold")
        return fig

    return _render(draw)


def _forest_panel(ax, change) -> None:
    items = [s for s in change.ranked() if s.diff is not None]
    for y, s in enumerate(items):
        d, lo, hi = (100 * x for x in s.diff)
        colour = REGRESSION_COLOUR if s.regression else CHANGED_COLOUR if s.changed else OTHER_COLOUR
        ax.plot([lo, hi], [y, y], color=colour, linewidth=1.1)
        marker = "v" if s.regression else "s" if s.changed else "o"
        ax.plot([d], [y], marker=marker, color=colour, markersize=5.5,
                markerfacecolor=colour if (s.regression or s.changed) else "white")
        ax.text(129, y, f"{d:+.1f}", ha="right", va="center", fontsize=7.5, color="#333333")
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_yticks(range(len(items)), [s.name + (f" {REGRESSION_MARK}" if s.regression else "") for s in items])
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.set_xlim(-105, 131)
    ax.set_xticks([-100, -50, 0, 50, 100])
    ax.grid(True, axis="x")
    ax.grid(False, axis="y")
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("change in agreement, points")
    ax.set_title(change.row.label, fontsize=10)


def change_forest(changes: Sequence) -> bytes:
    """Each slice's change in agreement (after - before, points, with its 95 % interval), one
    panel per :class:`~realign.report.changes.RunChange`, slices sorted by change, largest gain
    on top; the slices the policy changed and the regressions marked apart."""
    from matplotlib.lines import Line2D

    def draw():
        rows = max(len(c.slices) for c in changes)
        fig = _new_figure(min(16.0, 1.6 + 4.2 * len(changes)), min(40.0, 2.2 + 0.26 * rows))
        axes = fig.subplots(1, len(changes), squeeze=False)[0]
        for ax, change in zip(axes, changes):
            _forest_panel(ax, change)
        slices = [s for c in changes for s in c.slices if s.diff is not None]
        kinds = [("changed by the policy", "s", CHANGED_COLOUR, CHANGED_COLOUR,
                  any(s.changed and not s.regression for s in slices)),
                 ("regression", "v", REGRESSION_COLOUR, REGRESSION_COLOUR, any(s.regression for s in slices)),
                 ("other slice" if any(c.changed.slices is not None for c in changes) else "slice (changes unknown)",
                  "o", OTHER_COLOUR, "white", any(not s.changed and not s.regression for s in slices))]
        handles = [Line2D([], [], marker=m, color=c, markerfacecolor=f, linestyle="", label=label)
                   for label, m, c, f, shown in kinds if shown]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        fig.suptitle("Change in agreement per slice (95% intervals)", fontsize=11, fontweight="bold")
        return fig

    return _render(draw)
