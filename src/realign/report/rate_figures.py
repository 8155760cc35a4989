"""Rates compared across runs and their befores (agreement per slice, attack success per
template): grouped bars with 95 % intervals, or a dot plot where the groups are many."""

from __future__ import annotations

import math
import textwrap
from typing import Any, Sequence

from ..metrics.stats import ci_of, rate_of
from .figures import new_figure, render, series_colours


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
    fig = new_figure(9.0, min(40.0, 1.2 + sum(sizes) * row_h + 0.5 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False, height_ratios=sizes)[:, 0]
    colours = series_colours(series)
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
        fig = new_figure(width, height)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False, width_ratios=[s + 0.4 for s in sizes])[0]
        colours = series_colours(series)
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

    return render(draw)
