"""Pictures of what the stages wrote: the triage counts, the impact-weight histograms of the score
stage, and the loss components over the training steps."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from ..data import CATEGORIES, CONFLICT
from ..metrics.stats import number
from .collect import Source
from .figures import RUN_COLOURS, TRIAGE_COLOURS, new_figure, render


def impact_histograms(sources: Sequence[Source]) -> bytes:
    """One row per score stage, one panel per conflict category: the weight histogram."""

    def draw():
        rows = len(sources)
        fig = new_figure(9.5, 2.8 * rows + 0.2)
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

    return render(draw)


def triage_counts(sources: Sequence[Source]) -> bytes:
    """INVERT / PUNISH / RETAIN counts: one bar per category, grouped by triage run."""

    def draw():
        n = len(sources)
        fig = new_figure(min(12.0, 4.6 + 1.6 * n), 3.1)
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

    return render(draw)


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
        fig = new_figure(3.3 * cols, 2.8 * rows + (0.4 if len(series) > 1 else 0.0))
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

    return render(draw)
