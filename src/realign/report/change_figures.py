"""Pictures of what each run changed against its before (:class:`~realign.report.changes.RunChange`):
heat maps of agreement per category and context, and a forest plot of each slice's change."""

from __future__ import annotations

from typing import Sequence

from ..metrics.stats import rate_of
from .figures import new_figure, render

RATE_MAP, CHANGE_MAP = "cividis", "PuOr"
"""Colour maps of the change pictures, both readable with colour-blindness (and every value is
printed too, for greyscale and print): agreement 0-100 %, change -100 to +100 points."""
CHANGED_COLOUR, REGRESSION_COLOUR, OTHER_COLOUR = "#0072B2", "#D55E00", "#6f6f6f"
"""Forest plot markers (Okabe-Ito blue and vermillion): slices the policy changed, regressions."""
REGRESSION_MARK = "▼"


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
        fig = new_figure(1.1 + 3 * (0.62 * len(contexts) + 0.35), 1.9 + 0.36 * len(categories))
        axes = fig.subplots(1, 3)
        for k, (ax, (title, values, signed)) in enumerate(zip(axes, panels)):
            _heat_panel(ax, fig, grid, values, signed, marks, title, labels=k == 0)
        fig.suptitle("Agreement with the new policy by category and context", fontsize=11, fontweight="bold")
        return fig

    return render(draw)


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
        fig = new_figure(min(16.0, 1.6 + 4.2 * len(changes)), min(40.0, 2.2 + 0.26 * rows))
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

    return render(draw)
