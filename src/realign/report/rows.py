"""The rows the report compares: one per evaluation a run directory holds, and the base model's
numbers ("before") as their own rows, each run matched with its before; and the responses
behind a row (its ``generations.jsonl``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..metrics.tpa import style_of as style_of_raw
from .collect import RunData, Source

@dataclass
class Row:
    """One line of the comparison: a run's numbers, or a base model's ("before")."""

    label: str
    numbers: dict
    baseline: bool = False
    source: Source | None = None


def _started_from(run: dict, base: dict) -> bool:
    """Whether evaluation ``run`` is of a model made from ``base``'s model: an adapter on the
    same model, or a fully fine-tuned model whose reference it is."""
    reference = (run.get("config") or {}).get("reference")
    return bool(run.get("adapter")) and run.get("model") == base.get("model") or reference == base.get("model")


def _is_base_model_run(src: Source, found: RunData) -> bool:
    """An evaluation of a model without an adapter that another evaluation started from — an
    adapter on the same model, or a fully fine-tuned model whose reference it is (``realign
    run``'s ``eval/base``): the "before" of the others."""
    d = src.data
    if d.get("adapter") or not d.get("model"):
        return False
    return any(_started_from(o.data, d) for o in found.evals if o is not src)


def before_of(row: Row, rows: list[Row]) -> Row | None:
    """The "before" of a run's row among ``rows`` (:func:`_rows`): its own ``--baseline``
    numbers, else the base-model evaluation it started from, the one in its own run folder
    first. None for a before row, or a run with none."""
    if row.baseline or row.source is None:
        return None
    own = row.source.data.get("baseline")
    if isinstance(own, dict) and own:
        return next((r for r in rows if r.baseline and r.numbers == own), None)
    bases = [r for r in rows if r.baseline and r.source is not None and r.numbers is r.source.data
             and _started_from(row.source.data, r.numbers)]
    bases.sort(key=lambda r: r.source.run != row.source.run)
    return bases[0] if bases else None


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
