"""Reports: what one or more runs produced, as one self-contained HTML page or a Markdown file.

A run directory is read tolerantly: every file below it (up to :data:`SEARCH_DEPTH` levels)
named ``metrics.json`` (``realign eval``), ``*.summary.json`` with ``"stage": "triage"``
(``realign triage``) or ``"stage": "score"`` (``realign score``), or ``train_summary.json``
(``realign train``) is used; any of them may be missing, and a metrics file can also be
named directly. The report then shows

* a comparison table across runs and methods: Target Policy Agreement (TPA) overall with its
  95 % interval, balanced agreement, attack success (pooled over the jailbreak templates),
  benign accuracy, degenerate and harmful rates, perplexity and KL to the reference; the
  base model's numbers ("before") as their own rows;
* TPA per slice (and on the triaged-prompt slices INVERT / PUNISH / RETAIN), as a table and
  as a grouped bar chart before and after, with the 95 % intervals as error bars;
* attack success per jailbreak template (table and chart);
* the impact-weight histogram per category (INVERT, PUNISH) of every ``score`` stage;
* triage counts (bar chart);
* loss components over training steps (one panel per component, one line per run);
* win rates from ``realign winrate`` result files (any ``*winrate*.json`` with
  ``"stage": "winrate"``).

A piece that no run has is left out with a one-line note. Rates are shown as percentages
with one decimal. Figures are drawn with matplotlib's Agg renderer (no display needed);
HTML embeds them as base64 PNG data URIs (one file, no external assets), Markdown writes
them beside the report in ``<stem>_files/`` and links them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import RealignError
from .evaluate.metrics import Headline, headlines
from .evaluate.stats import ci_of, number, rate_of
from .evaluate.tpa import style_of as style_of_raw
from .files import atomic_open, write_text

__all__ = ["SEARCH_DEPTH", "Figure", "RunData", "build_report", "collect"]

SEARCH_DEPTH = 2
"""How many directory levels below a run directory are searched for result files."""
METRICS_NAME = "metrics.json"
TRAIN_NAME = "train_summary.json"
SUMMARY_SUFFIX = ".summary.json"
WINRATE_HINT = "winrate"
"""Files with this in their name are read too: ``realign winrate`` results (``"stage": "winrate"``)."""
TRIAGE_CATEGORIES = ("INVERT", "PUNISH", "RETAIN")
TRIAGE_SLICE_NAMES = {"INVERT": "INVERT success", "PUNISH": "PUNISH compliance", "RETAIN": "RETAIN preservation"}
IMPACT_CATEGORIES = ("INVERT", "PUNISH")
MAX_EXAMPLE_SLICES = 12
EXAMPLES_PER_SLICE = 2
EXAMPLE_CHARS = 160
"""The report's example responses: so many slices, prompts per slice, characters per response."""
MAX_SLICE_COLUMNS = 8
"""With more slices than this, the per-slice table lists slices as rows and runs as columns."""

MISSING = "—"
BASELINE_COLOUR = "#9a9a9a"
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
TRIAGE_COLOURS = {"INVERT": "#1f77b4", "PUNISH": "#d62728", "RETAIN": "#2ca02c"}


# --------------------------------------------------------------------------- reading runs


@dataclass
class Source:
    """One result file: its kind (eval, triage, score, train), where it is, and its content."""

    kind: str
    path: Path
    run: Path
    data: dict
    label: str = ""


@dataclass
class RunData:
    """Everything found for a set of run directories, labelled for display."""

    evals: list[Source] = field(default_factory=list)
    triage: list[Source] = field(default_factory=list)
    score: list[Source] = field(default_factory=list)
    train: list[Source] = field(default_factory=list)
    winrate: list[Source] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Files that could not be used, one line each."""

    def by_kind(self, kind: str) -> list[Source]:
        return {"eval": self.evals, "triage": self.triage, "score": self.score, "train": self.train,
                "winrate": self.winrate}[kind]

    @property
    def all(self) -> list[Source]:
        return [*self.evals, *self.triage, *self.score, *self.train, *self.winrate]

    @property
    def empty(self) -> bool:
        return not self.all


def _candidates(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found: list[Path] = []
    for depth in range(SEARCH_DEPTH + 1):
        pattern = "/".join(["*"] * depth + ["*.json"])
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).parts
            if any(part.startswith(".") for part in rel):
                continue  # hidden folders and the temporary files of atomic writes
            if _wanted(path.name):
                found.append(path)
    return found


def _wanted(name: str) -> bool:
    """Result files by name (so tokenizer and adapter JSON files are never parsed)."""
    return name in (METRICS_NAME, TRAIN_NAME) or name.endswith(SUMMARY_SUFFIX) or WINRATE_HINT in name


def _kind(path: Path, data: dict, named: bool) -> str | None:
    """Which stage wrote ``data`` (None: not a file the report uses)."""
    stage = data.get("stage")
    name = path.name
    if name == METRICS_NAME or (named and stage == "eval"):
        if stage == "eval" or (stage is None and isinstance(data.get("tpa"), dict)):
            return "eval"
        return None
    if name == TRAIN_NAME or (named and stage == "train"):
        return "train" if stage in (None, "train") else None
    if stage == "winrate" and isinstance(data.get("summary"), dict):
        return "winrate"
    if name.endswith(SUMMARY_SUFFIX) or named:
        if stage == "triage":
            return "triage"
        if stage == "score":
            return "score"
    return None


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def collect(run_dirs: Sequence[str | Path]) -> RunData:
    """Find and read the result files of every run directory (or named metrics file)."""
    if not run_dirs:
        raise RealignError("report: give at least one run directory")
    found = RunData()
    seen: set[Path] = set()
    for run in map(Path, run_dirs):
        if not run.exists():
            raise RealignError(f"{run}: run directory not found")
        for path in _candidates(run):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            named = path == run
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
                found.notes.append(f"{_display(path)}: skipped, not readable JSON ({reason})")
                continue
            if not isinstance(data, dict):
                if named or path.name in (METRICS_NAME, TRAIN_NAME):
                    found.notes.append(f"{_display(path)}: skipped, not a JSON object")
                continue
            kind = _kind(path, data, named)
            if kind is None:
                if named:
                    found.notes.append(f"{_display(path)}: skipped, not a metrics or summary file")
                continue
            found.by_kind(kind).append(Source(kind, path, run.parent if named else run, data))
    _label_all(found)
    return found


def _run_name(run: Path) -> str:
    return run.resolve().name or str(run)


def _label_all(found: RunData) -> None:
    """Display labels: the eval's own label, else the run directory's name (with the
    sub-folder when one run holds several files of a kind); duplicates get their path."""
    run_label: dict[Path, str] = {}
    evals_per_run: dict[Path, list[Source]] = {}
    for src in found.evals:
        evals_per_run.setdefault(src.run, []).append(src)
    for run, sources in evals_per_run.items():
        if len(sources) == 1 and isinstance(sources[0].data.get("label"), str) and sources[0].data["label"]:
            run_label[run] = sources[0].data["label"]
    for src in found.winrate:
        a, b = src.data.get("a") or {}, src.data.get("b") or {}
        src.label = f"{a.get('label', 'A')} vs {b.get('label', 'B')}"
    for kind in ("eval", "triage", "score", "train"):
        sources = found.by_kind(kind)
        per_run: dict[Path, int] = {}
        for src in sources:
            per_run[src.run] = per_run.get(src.run, 0) + 1
        for src in sources:
            base = run_label.get(src.run) or _run_name(src.run)
            if kind == "eval" and isinstance(src.data.get("label"), str) and src.data["label"]:
                src.label = src.data["label"]
                continue
            if per_run[src.run] > 1:
                rel = src.path.parent.relative_to(src.run) if src.path.parent != src.run else Path(src.path.stem)
                base = f"{base}/{rel.as_posix()}"
            if kind == "train":
                method = src.data.get("method")
                name = method.get("name") if isinstance(method, dict) else method if isinstance(method, str) else None
                if name and name.replace("_", "-") not in base.replace("_", "-"):
                    base = f"{base} ({name})"
            src.label = base
        counts: dict[str, int] = {}
        for src in sources:
            counts[src.label] = counts.get(src.label, 0) + 1
        for src in sources:
            if counts[src.label] > 1:
                src.label = f"{src.label} [{_display(src.path)}]"


# --------------------------------------------------------------------------- numbers


def pct(value: float | None) -> str:
    """0.725 -> "72.5%"; None -> "—"."""
    return MISSING if value is None else f"{100 * value:.1f}%"


def fmt_rate(value: Any, *, ci: bool = False, n: bool = False) -> str:
    r = rate_of(value)
    if r is None:
        return MISSING
    text = pct(r)
    interval = ci_of(value)
    if ci and interval is not None:
        text += f" ({100 * interval[0]:.1f}–{100 * interval[1]:.1f})"
    if n and isinstance(value, dict) and isinstance(value.get("n"), int):
        text += f" · n={value['n']}"
    return text


def fmt_num(value: Any, decimals: int = 3) -> str:
    """A number with fixed decimals (scientific notation when it would show as zero or is huge)."""
    v = number(value)
    if v is None:
        return MISSING
    if v != 0 and (abs(v) < 0.5 * 10**-decimals or abs(v) >= 1e6):
        return f"{v:.2e}"
    return f"{v:,.{decimals}f}"


@dataclass
class Row:
    """One line of the comparison: a run's numbers, or a base model's ("before")."""

    label: str
    numbers: dict
    baseline: bool = False
    source: Source | None = None


def _is_base_model_run(src: Source, found: RunData) -> bool:
    """An evaluation of a model without an adapter that another evaluation started from — an
    adapter on the same model, or a fully fine-tuned model whose reference it is (``realign
    run``'s ``eval/base``): the "before" of the others."""
    d = src.data
    if d.get("adapter") or not d.get("model"):
        return False

    def started_from_it(o: Source) -> bool:
        reference = (o.data.get("config") or {}).get("reference")
        return bool(o.data.get("adapter")) and o.data.get("model") == d["model"] or reference == d["model"]

    return any(started_from_it(o) for o in found.evals if o is not src)


def _rows(found: RunData) -> list[Row]:
    """Baselines first (the base-model runs and the ``--baseline`` numbers of adapter runs,
    identical ones merged), then every other run in the order given. Baselines are named by
    their run's label or the model folder's name, marked "(before)"."""
    rows: list[Row] = []
    baselines: dict[str, Row] = {}
    for src in found.evals:
        if _is_base_model_run(src, found):
            baselines[f"run:{src.path}"] = Row(f"{src.label} (before)", src.data, True, src)
    for src in found.evals:
        base = src.data.get("baseline")
        if isinstance(base, dict) and base:
            key = json.dumps(base, sort_keys=True, default=str)
            if key not in baselines:
                model = base.get("model") or src.data.get("model")
                name = Path(str(model)).name if model else src.label
                baselines[key] = Row(f"{name} (before)", base, True, src)
    labels = [r.label for r in baselines.values()]
    for row in baselines.values():
        if labels.count(row.label) > 1 and row.source is not None:
            row.label = f"{row.source.label} (before)"
    rows.extend(baselines.values())
    rows.extend(Row(src.label, src.data, False, src) for src in found.evals if not _is_base_model_run(src, found))
    return rows


def _balanced_meaning(rows: list[Row]) -> str:
    """What the Balanced column is, from the metrics themselves (see ``evaluate.tpa.agreement``)."""
    kinds = {("must-help" if "must_help" in (r.numbers.get("tpa") or {}) else "slices") for r in rows
             if (r.numbers.get("tpa") or {}).get("balanced") is not None}
    if kinds == {"must-help"}:
        return ("Balanced: mean of the must-help and must-refuse rates (prompts whose expected behaviour under "
                "this policy is a helpful answer, resp. a refusal).")
    if kinds == {"slices"}:
        return "Balanced: mean of the per-slice rates (the prompts do not say which behaviour the policy expects)."
    return ("Balanced: mean of the must-help and must-refuse rates where the prompts say which behaviour the policy "
            "expects, else the mean of the per-slice rates.")


def _ordered_union(dicts: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for d in dicts:
        if isinstance(d, dict):
            out.extend(k for k in d if k not in out)
    return out


# --------------------------------------------------------------------------- figures


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
    import textwrap

    return textwrap.fill(label.replace("_", " ") if len(label) > width else label, width) or label


DOT_PLOT_GROUPS = 12
"""With more groups than this, rates are drawn as a dot plot (groups as rows) instead of bars."""


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
            ys, xs, err_lo, err_hi = [], [], [], []
            for g, value in enumerate(values[j]):
                r = rate_of(value)
                if r is None:
                    continue
                ys.append(g - 0.36 + spread * (j + 0.5))
                xs.append(100 * r)
                interval = ci_of(value)
                lo, hi = (r, r) if interval is None else interval
                err_lo.append(max(0.0, 100 * (r - lo)))
                err_hi.append(max(0.0, 100 * (hi - r)))
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
        bar = 0.8 / max(1, n_series)
        colours = _series_colours(series)
        top = 0.0
        for ax, (subtitle, groups, values), rot in zip(axes, panels, rotate):
            for j, (label, is_baseline) in enumerate(series):
                xs, heights, err_lo, err_hi = [], [], [], []
                for g, value in enumerate(values[j]):
                    r = rate_of(value)
                    if r is None:
                        continue
                    xs.append(g - 0.4 + bar * (j + 0.5))
                    heights.append(100 * r)
                    interval = ci_of(value)
                    lo, hi = (r, r) if interval is None else interval
                    err_lo.append(max(0.0, 100 * (r - lo)))
                    err_hi.append(max(0.0, 100 * (hi - r)))
                    top = max(top, 100 * max(r, hi))
                ax.bar(xs, heights, bar * 0.9, label=label, color=colours[j], hatch="///" if is_baseline else None,
                       edgecolor="#6f6f6f" if is_baseline else "white", linewidth=0.6)
                if any(err_lo) or any(err_hi):
                    ax.errorbar(xs, heights, yerr=[err_lo, err_hi], fmt="none", ecolor="#333333", elinewidth=0.9,
                                capsize=2.5)
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
        axes = fig.subplots(rows, len(IMPACT_CATEGORIES), squeeze=False)
        for r, src in enumerate(sources):
            hist = src.data.get("histogram") or {}
            weights = src.data.get("weights") or {}
            for c, category in enumerate(IMPACT_CATEGORIES):
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
            values = [counts.get(c, 0) or 0 for c in TRIAGE_CATEGORIES]
            bars = ax.bar(TRIAGE_CATEGORIES, values, color=[TRIAGE_COLOURS[c] for c in TRIAGE_CATEGORIES], width=0.6)
            total = sum(values)
            ax.bar_label(bars, labels=[f"{v} ({100 * v / total:.1f}%)" if total else str(v) for v in values], padding=2)
            ax.set_title(f"Triage of {total} pairs" + (f" — {sources[0].label}" if sources[0].label else ""))
        else:
            bar = 0.8 / len(TRIAGE_CATEGORIES)
            for j, category in enumerate(TRIAGE_CATEGORIES):
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


def _loss_series(summary: dict) -> dict[str, tuple[list[float], list[float]]]:
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


# --------------------------------------------------------------------------- the document


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    muted: list[bool] = field(default_factory=list)
    """Rows shown subdued (the base model's numbers)."""
    caption: str = ""


@dataclass
class Bullets:
    """A collapsible list (the files a report was built from)."""

    title: str
    items: list[str]


@dataclass
class Section:
    title: str
    blocks: list[Any] = field(default_factory=list)
    """Tables, Figures and strings (notes)."""


def _drop_empty_columns(header: list[str], rows: list[list[str]], keep: int = 1) -> tuple[list[str], list[list[str]]]:
    used = [i for i in range(len(header)) if i < keep or any(r[i] != MISSING for r in rows)]
    return [header[i] for i in used], [[r[i] for i in used] for r in rows]


def _cell(headline: Headline, value: Any) -> str:
    """A headline number as the Comparison table shows it."""
    if headline.show == "count":
        return str(value) if isinstance(value, int) else MISSING
    if headline.show == "number":
        return fmt_num(value, headline.decimals)
    return fmt_rate(value, ci=headline.show == "rate_ci")


def _comparison_section(found: RunData, rows: list[Row]) -> Section:
    section = Section("Comparison")
    if not rows:
        section.blocks.append("No metrics.json found: no evaluation numbers to compare.")
        return section
    shown = [h for h in headlines() if h.column is not None]
    header = ["Run", *(h.column for h in shown)]
    table_rows = [[row.label, *(_cell(h, h.read(row.numbers)) for h in shown)] for row in rows]
    header, table_rows = _drop_empty_columns(header, table_rows)
    section.blocks.append(Table(
        "", header, table_rows, [r.baseline for r in rows],
        "Rates in percent. TPA: share of responses the judge finds compliant with the new policy (higher is "
        "better), 95% Wilson interval in parentheses. " + _balanced_meaning(rows) + " ASR: attack success "
        "rate, pooled over the jailbreak templates (lower is better)."
        + (" Rows marked (before) are the model before re-alignment." if any(r.baseline for r in rows) else ""),
    ))
    return section


def _slice_section(rows: list[Row]) -> tuple[Section, list[str]]:
    section = Section("Policy agreement by slice")
    slices = _ordered_union((r.numbers.get("tpa") or {}).get("by_slice") for r in rows)
    triage_slices = [c for c in TRIAGE_CATEGORIES if any(isinstance(r.numbers.get("triage_slices"), dict)
                                                          and c in r.numbers["triage_slices"] for r in rows)]
    if not rows:
        return section, []
    if not slices and not triage_slices:
        section.blocks.append("No per-slice rates in the metrics.")
        return section, []
    columns = [*slices, *(TRIAGE_SLICE_NAMES[c] for c in triage_slices)]

    def values(row: Row) -> list[str]:
        by_slice = (row.numbers.get("tpa") or {}).get("by_slice") or {}
        triaged = row.numbers.get("triage_slices") or {}
        return [fmt_rate(by_slice.get(s)) for s in slices] + [fmt_rate(triaged.get(c)) for c in triage_slices]

    if len(columns) <= MAX_SLICE_COLUMNS:
        section.blocks.append(Table("", ["Run", *columns], [[r.label, *values(r)] for r in rows],
                                    [r.baseline for r in rows]))
    else:
        per_run = [values(r) for r in rows]
        section.blocks.append(Table("", ["Slice", *(r.label for r in rows)],
                                    [[col, *(v[i] for v in per_run)] for i, col in enumerate(columns)]))
    section.blocks.append("Per-slice TPA in percent; INVERT success, PUNISH compliance and RETAIN preservation are "
                          "the agreement rates on prompts taken from the triaged pairs of each category.")
    return section, slices


def _attack_section(rows: list[Row]) -> Section | None:
    templates = _ordered_union(r.numbers.get("attacks") for r in rows)
    if not templates:
        return None
    if "control" in templates:
        templates.remove("control")
        templates.insert(0, "control")
    section = Section("Attack success")
    table_rows = [[r.label, *(fmt_rate((r.numbers.get("attacks") or {}).get(t), ci=True) for t in templates)]
                  for r in rows]
    section.blocks.append(Table("", ["Run", *templates], table_rows, [r.baseline for r in rows],
                                "Share of harmful requests answered in violation of the policy (lower is better), "
                                "95% interval in parentheses; control = the request without a jailbreak wrapper."))
    values = [[(r.numbers.get("attacks") or {}).get(t) for t in templates] for r in rows]
    png = grouped_bars("Attack success rate by jailbreak template", [("", templates, values)],
                       [(r.label, r.baseline) for r in rows], "attack success (%)", auto_ylim=True)
    section.blocks.append(Figure("attack_success", "Attack success rate by template",
                                 "Grouped bar chart of attack success rate per jailbreak template and run", png))
    return section


def _generations(row: Row) -> list[dict]:
    """The policy-prompt responses behind a row (``generations.jsonl`` beside its metrics;
    a ``--baseline`` row takes the records of the model without its adapter)."""
    if row.source is None:
        return []
    name = ((row.source.data.get("files") or {}).get("generations")) or "generations.jsonl"
    path = row.source.path.parent / str(name)
    state = "baseline" if row.baseline and row.numbers is not row.source.data else "after"
    out = []
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and rec.get("set") == "policy" and rec.get("model_state", "after") == state:
                    out.append(rec)
    except OSError:
        return []
    return out


def _verdict_text(rec: dict) -> str:
    verdict = {True: "complies", False: "violates"}.get(rec.get("compliant"), "abstained")
    style = style_of_raw(rec.get("raw"))
    return f"{verdict} ({style})" if style else verdict


def _clip(text: Any, limit: int = EXAMPLE_CHARS) -> str:
    text = " ".join(str(text if not isinstance(text, list) else " ".join(
        str(m.get("content", "")) for m in text if isinstance(m, dict))).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _responses_section(rows: list[Row]) -> Section | None:
    """Style counts per run and a few example responses per slice with their verdicts, so a
    rate can be understood without opening ``generations.jsonl``."""
    styled = [r for r in rows if isinstance(r.numbers.get("styles"), dict) and r.numbers["styles"]]
    records = {id(r): _generations(r) for r in rows}
    if not styled and not any(records.values()):
        return None
    section = Section("Responses")
    if styled:
        styles = _ordered_union(r.numbers["styles"] for r in styled)
        section.blocks.append(Table("Response styles", ["Run", *styles],
                                    [[r.label, *(str(r.numbers["styles"].get(st, 0)) for st in styles)] for r in styled],
                                    [r.baseline for r in styled],
                                    "Number of policy-prompt responses of each style, as the rules judge classified "
                                    "them (degenerate / unclassified: broken or unrecognised text)."))
    by_id = {id(r): {str(rec.get("id")): rec for rec in records[id(r)]} for r in rows}
    order: dict[str, list[str]] = {}
    for r in rows:
        for rec in records[id(r)]:
            ids = order.setdefault(str(rec.get("slice") or "all"), [])
            if str(rec.get("id")) not in ids:
                ids.append(str(rec.get("id")))
    shown = 0
    for slice_name, ids in list(order.items())[:MAX_EXAMPLE_SLICES]:
        for rid in ids[:EXAMPLES_PER_SLICE]:
            have = [(r, by_id[id(r)].get(rid)) for r in rows if by_id[id(r)].get(rid) is not None]
            if not have:
                continue
            prompt = _clip(have[0][1].get("prompt"))
            section.blocks.append(Table(f"{slice_name}: {prompt}", ["Run", "Response", "Verdict"],
                                        [[r.label, _clip(rec.get("response")), _verdict_text(rec)] for r, rec in have],
                                        [r.baseline for r, _ in have]))
            shown += 1
    if shown:
        section.blocks.append(f"The first {EXAMPLES_PER_SLICE} prompts of each slice (at most {MAX_EXAMPLE_SLICES} "
                              f"slices), responses cut at {EXAMPLE_CHARS} characters; every response is in each "
                              "run's generations.jsonl.")
    return section


def _winrate_section(sources: Sequence[Source]) -> Section:
    section = Section("Win rate")
    rows = []
    for src in sources:
        s = src.data["summary"]
        rate = {"rate": s.get("win_rate"), "ci95": s.get("ci95")}
        position = s.get("position") or {}
        rows.append([src.label, fmt_rate(rate, ci=True), str(s.get("n", MISSING)),
                     f"{s.get('wins', 0)} / {s.get('ties', 0)} / {s.get('losses', 0)}",
                     fmt_rate(s.get("decisive"), ci=True), pct(number(position.get("first_shown_wins"))),
                     str(src.data.get("judge") or MISSING)])
    section.blocks.append(Table("", ["A vs B", "Win rate of A (95% CI)", "n", "W / T / L", "A among decisive",
                                     "First shown wins", "Judge"], rows, caption=(
        "Each pair judged in both orders (A first, then B first); an item scores 1 if A wins both, 0.5 if the "
        "orders split or tie, 0 if B wins both. Win rate = mean score with a normal-approximation interval. "
        "First shown wins: the judge's position bias (50% = none).")))
    return section


def _provenance_table(found: RunData) -> Table | None:
    if not found.evals:
        return None
    rows = []
    for src in found.evals:
        d = src.data
        policy = d.get("policy")
        if isinstance(policy, dict):
            policy = " ".join(str(x) for x in (policy.get("name"), f"({policy['hash']})" if policy.get("hash") else None) if x)
        rows.append([src.label, str(d.get("model") or MISSING), str(d.get("adapter") or MISSING),
                     str(policy or MISSING), str(d.get("judge") or MISSING), _display(src.path)])
    return Table("Evaluated runs", ["Run", "Model", "Adapter", "Policy", "Judge", "File"], rows)


def build_sections(found: RunData) -> list[Section]:
    rows = _rows(found)
    sections = [_comparison_section(found, rows)]

    slice_section, slices = _slice_section(rows)
    if rows:
        panels = []
        tpa = [r.numbers.get("tpa") or {} for r in rows]
        values = [[m.get("overall"), *((m.get("by_slice") or {}).get(s) for s in slices)] for m in tpa]
        if any(rate_of(v) is not None for vals in values for v in vals):
            panels.append(("prompt slices", ["overall", *slices], values))
        triaged = [c for c in TRIAGE_CATEGORIES if any(c in (r.numbers.get("triage_slices") or {}) for r in rows)]
        if triaged:
            values = [[(r.numbers.get("triage_slices") or {}).get(c) for c in triaged] for r in rows]
            panels.append(("prompts from triaged pairs", [TRIAGE_SLICE_NAMES[c] for c in triaged], values))
        if panels:
            if len(panels) == 1:
                panels[0] = ("", *panels[0][1:])
            png = grouped_bars("Target policy agreement, before and after", panels,
                               [(r.label, r.baseline) for r in rows], "agreement with the new policy (%)")
            slice_section.blocks.append(Figure("tpa_by_slice", "TPA by slice, before and after (95% intervals)",
                                               "Grouped bar chart of TPA per slice for the base model and each run", png))
        if not any(r.baseline for r in rows):
            slice_section.blocks.append("No base-model (before) evaluation among these runs: only the runs are shown "
                                        "(evaluate the base model too, or use realign eval --baseline).")
    sections.append(slice_section)

    attacks = _attack_section(rows)
    if attacks is not None:
        sections.append(attacks)
    elif rows:
        sections.append(Section("Attack success", ["No attack results in the metrics."]))

    responses = _responses_section(rows)
    if responses is not None:
        sections.append(responses)

    if found.winrate:
        sections.append(_winrate_section(found.winrate))

    impact = Section("Impact weights")
    scored = [s for s in found.score if isinstance(s.data.get("histogram"), dict)]
    if scored:
        impact.blocks.append(Figure("impact_histogram", "Impact-weight histogram per category",
                                    "Histograms of the impact weights of INVERT and PUNISH records",
                                    impact_histograms(scored)))
        header = ["Score run", "Category", "n", "mean", "median", "max", "zero", "share of weight"]
        table_rows = []
        for src in scored:
            for category in IMPACT_CATEGORIES:
                st = (src.data.get("weights") or {}).get(category) or {}
                table_rows.append([src.label, category, str(st.get("n", MISSING)), fmt_num(st.get("mean")),
                                   fmt_num(st.get("median")), fmt_num(st.get("max")),
                                   pct(number(st.get("fraction_zero"))), pct(number(st.get("share")))])
        impact.blocks.append(Table("", header, table_rows, caption="Weights after clamping and normalisation; "
                                   "share: the category's part of the total conflict weight."))
    unscored = [s for s in found.score if s not in scored]
    for src in unscored:
        impact.blocks.append(f"{src.label}: no impact weights ({'; '.join(map(str, src.data.get('notes') or [])) or 'no histogram'}).")
    if not found.score:
        impact.blocks.append("No score summary (*.summary.json with stage \"score\") found: impact histogram omitted.")
    sections.append(impact)

    triage = Section("Triage")
    counted = [s for s in found.triage if isinstance(s.data.get("counts"), dict)]
    if counted:
        triage.blocks.append(Figure("triage_counts", "Triage counts", "Bar chart of INVERT, PUNISH and RETAIN counts",
                                    triage_counts(counted)))
        rows_t = []
        for src in counted:
            c = src.data["counts"]
            total = sum(int(c.get(k, 0) or 0) for k in TRIAGE_CATEGORIES)
            rows_t.append([src.label, *(f"{int(c.get(k, 0) or 0)}" for k in TRIAGE_CATEGORIES), str(total),
                           str(src.data.get("dropped", MISSING)), str(src.data.get("judge") or MISSING)])
        triage.blocks.append(Table("", ["Triage run", *TRIAGE_CATEGORIES, "Total", "Dropped", "Judge"], rows_t))
    else:
        triage.blocks.append("No triage summary (*.summary.json with stage \"triage\") found: triage counts omitted.")
    sections.append(triage)

    training = Section("Training")
    curves = [(s.label, _loss_series(s.data)) for s in found.train]
    with_data = [(label, c) for label, c in curves if c]
    if with_data:
        training.blocks.append(Figure("loss_curves", "Loss components over training steps",
                                      "Line plots of each loss component against the training step", loss_curves(with_data)))
        rows_tr = []
        for s in found.train:
            method = s.data.get("method")
            name = method.get("name") if isinstance(method, dict) else method
            rows_tr.append([s.label, str(name or MISSING), str(s.data.get("steps", MISSING)),
                            fmt_num(s.data.get("train_loss"), 4), fmt_num(s.data.get("wall_s"), 1)])
        training.blocks.append(Table("", ["Train run", "Method", "Steps", "Mean loss", "Wall time (s)"], rows_tr))
    for label, c in curves:
        if not c:
            training.blocks.append(f"{label}: the training summary has no logged loss values.")
    if not found.train:
        training.blocks.append("No train_summary.json found: loss curves omitted.")
    sections.append(training)

    provenance = _provenance_table(found)
    files = Section("Sources")
    if provenance is not None:
        files.blocks.append(provenance)
    listed = [f"{s.kind}: {_display(s.path)}" for s in found.all]
    files.blocks.append(Bullets(f"Files read ({len(listed)})", listed))
    files.blocks.extend(found.notes)
    sections.append(files)
    return sections


# --------------------------------------------------------------------------- HTML


_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1d232b;
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; }
header { border-bottom: 2px solid #d9dde3; margin-bottom: 8px; padding-bottom: 10px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e1e4e8; }
.meta { color: #5b6470; font-size: 13px; margin: 0; }
.table-wrap { overflow-x: auto; margin: 8px 0 6px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; min-width: 40%;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
th, td { padding: 6px 12px; border-bottom: 1px solid #e6e8eb; white-space: nowrap; }
th { background: #eef1f5; text-align: left; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) td { background: #fafbfc; }
tr.muted td { color: #6b7480; font-style: italic; }
.caption, .note { color: #5b6470; font-size: 13px; margin: 4px 0 12px; max-width: 75em; }
.note { border-left: 3px solid #c9d1db; padding-left: 10px; }
figure { margin: 14px 0 22px; background: #fff; padding: 10px; border: 1px solid #e3e6ea; border-radius: 6px;
  display: inline-block; max-width: calc(100% - 22px); }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #5b6470; font-size: 13px; margin-top: 6px; }
details { margin: 8px 0; font-size: 13px; color: #3b434d; }
summary { cursor: pointer; font-weight: 600; }
details ul { margin: 6px 0 0; padding-left: 22px; }
code { font: 12px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
footer { margin-top: 36px; color: #8a929c; font-size: 12px; }
"""


def _is_numeric_cell(text: str) -> bool:
    t = text.strip()
    return bool(t) and (t == MISSING or t[0].isdigit() or (t[0] == "-" and t[1:2].isdigit()))


def _html_table(table: Table) -> str:
    numeric = [all(_is_numeric_cell(r[i]) for r in table.rows) and i > 0 for i in range(len(table.header))]
    parts = ['<div class="table-wrap"><table>']
    parts.append("<thead><tr>" + "".join(
        f'<th class="num">{html.escape(h)}</th>' if numeric[i] else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(table.header)) + "</tr></thead><tbody>")
    for k, row in enumerate(table.rows):
        muted = k < len(table.muted) and table.muted[k]
        cells = "".join(f'<td class="num">{html.escape(c)}</td>' if numeric[i] else f"<td>{html.escape(c)}</td>"
                        for i, c in enumerate(row))
        parts.append(f'<tr class="muted">{cells}</tr>' if muted else f"<tr>{cells}</tr>")
    parts.append("</tbody></table></div>")
    if table.caption:
        parts.append(f'<p class="caption">{html.escape(table.caption)}</p>')
    return "".join(parts)


def _title_block(found: RunData) -> tuple[str, str]:
    runs = sorted({_run_name(s.run) for s in found.all})
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "Re-alignment report", f"{len(runs)} run folder{'s' if len(runs) != 1 else ''}: {', '.join(runs)} · generated {created}"


def render_html(sections: list[Section], found: RunData) -> str:
    title, meta = _title_block(found)
    body = [f"<header><h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(meta)}</p></header>"]
    for section in sections:
        body.append(f"<section><h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                if block.title:
                    body.append(f"<h3>{html.escape(block.title)}</h3>")
                body.append(_html_table(block))
            elif isinstance(block, Bullets):
                items = "".join(f"<li><code>{html.escape(item)}</code></li>" for item in block.items)
                body.append(f"<details><summary>{html.escape(block.title)}</summary><ul>{items}</ul></details>")
            elif isinstance(block, Figure):
                data = base64.b64encode(block.png).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(block.title)}</figcaption></figure>")
            else:
                body.append(f'<p class="note">{html.escape(str(block))}</p>')
        body.append("</section>")
    body.append("<footer>Written by realign report (trace-realign).</footer>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


# --------------------------------------------------------------------------- Markdown


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " "})


def _md_text(text: str) -> str:
    """Text from result files (labels, slice names, responses) as inert Markdown: no HTML, no
    emphasis, links or table breaks."""
    return str(text).translate(_MD_SPECIAL)


def _md_cell(text: str) -> str:
    return _md_text(text)


def _md_table(table: Table) -> str:
    numeric = [all(_is_numeric_cell(r[i]) for r in table.rows) and i > 0 for i in range(len(table.header))]
    lines = []
    if table.title:
        lines += [f"### {_md_text(table.title)}", ""]
    lines.append("| " + " | ".join(_md_cell(h) for h in table.header) + " |")
    lines.append("|" + "|".join("---:" if numeric[i] else ":---" for i in range(len(table.header))) + "|")
    for k, row in enumerate(table.rows):
        muted = k < len(table.muted) and table.muted[k]
        cells = [_md_cell(c) for c in row]
        if muted:
            cells[0] = f"*{cells[0]}*"
        lines.append("| " + " | ".join(cells) + " |")
    if table.caption:
        lines += ["", f"_{_md_cell(table.caption)}_"]
    return "\n".join(lines)


def render_markdown(sections: list[Section], found: RunData, out: Path) -> tuple[str, dict[Path, bytes]]:
    title, meta = _title_block(found)
    folder = Path(f"{out.stem}_files")
    images: dict[Path, bytes] = {}
    lines = [f"# {title}", "", meta, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines += [_md_table(block), ""]
            elif isinstance(block, Bullets):
                lines += [f"**{_md_text(block.title)}**", "", *(f"- `{str(item).replace('`', chr(39))}`" for item in block.items), ""]
            elif isinstance(block, Figure):
                rel = folder / f"{block.name}.png"
                images[rel] = block.png
                lines += [f"![{block.alt}]({rel.as_posix()})", "", f"*{block.title}*", ""]
            else:
                lines += [f"> {_md_text(block)}", ""]
    return "\n".join(lines).rstrip() + "\n", images


# --------------------------------------------------------------------------- entry point


def build_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write a report of ``run_dirs`` to ``out``: ``.html`` (one self-contained file) or
    ``.md`` (with the figures as PNG files in ``<stem>_files/`` beside it). Returns ``out``."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".md", ".markdown"):
        raise RealignError(f"{out}: the report must end in .html or .md")
    found = collect(run_dirs)
    if found.empty:
        where = ", ".join(str(p) for p in run_dirs)
        detail = f" ({'; '.join(found.notes)})" if found.notes else ""
        raise RealignError(
            f"nothing to report in {where}: no {METRICS_NAME}, *{SUMMARY_SUFFIX} (stage triage or score) or "
            f"{TRAIN_NAME} within {SEARCH_DEPTH} levels{detail}"
        )
    sections = build_sections(found)
    if suffix in (".html", ".htm"):
        write_text(out, render_html(sections, found))
    else:
        text, images = render_markdown(sections, found, out)
        for rel, png in images.items():
            with atomic_open(out.parent / rel, "wb") as fh:
                fh.write(png)
        write_text(out, text)
    return out
