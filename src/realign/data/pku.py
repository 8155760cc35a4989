"""PKU-SafeRLHF → preference pairs, as the reference code prepares it (docs/method.md):
rows without ``safer_response_id`` are dropped; one safe and one unsafe response → the safe
one is chosen; both safe → ``safer_response_id`` picks the chosen (``better_response_id``
when that is missing); both unsafe → the safer one is chosen.

Loads through ``datasets.load_dataset("PKU-Alignment/PKU-SafeRLHF")`` when the hub is
reachable, or from a local copy (a saved dataset folder, parquet, JSON or JSONL file)."""

from __future__ import annotations

from typing import Any, Iterator

from . import PreferencePair, iter_source
from ..errors import DataError, RealignError

HUB_NAME = "PKU-Alignment/PKU-SafeRLHF"
REQUIRED = ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe")
KEPT = ("prompt_source", "response_0_harm_category", "response_1_harm_category",
        "response_0_severity_level", "response_1_severity_level")


def _valid_id(value: Any) -> int | None:
    return value if value in (0, 1) and not isinstance(value, bool) else None


def chosen_index(row: dict) -> int | None:
    """Index (0 or 1) of the chosen response, or None when the row is dropped."""
    safer = _valid_id(row.get("safer_response_id"))
    if safer is None:
        return None
    safe = (bool(row["is_response_0_safe"]), bool(row["is_response_1_safe"]))
    if safe[0] != safe[1]:
        return 0 if safe[0] else 1
    if safe[0]:  # both safe
        return safer if safer is not None else _valid_id(row.get("better_response_id"))
    return safer  # both unsafe: the safer one


def pku_pairs(source: str | None = None, split: str = "train") -> tuple[list[PreferencePair], dict]:
    """Pairs from PKU-SafeRLHF (hub name by default, or a local copy) and counts of what was
    kept and dropped."""
    source = source or f"hf:{HUB_NAME}"
    pairs: list[PreferencePair] = []
    counts = {"rows": 0, "dropped_no_safer_id": 0, "one_safe": 0, "both_safe": 0, "both_unsafe": 0}
    rows: Iterator = iter_source(source, split)
    for where, row in rows:
        if isinstance(row, DataError):
            raise row
        counts["rows"] += 1
        if not isinstance(row, dict):
            raise DataError(source, "expected a record object", **where)
        for name in REQUIRED:
            if name not in row:
                raise DataError(source, "missing (is this PKU-SafeRLHF?)", field=name, **where)
        c = chosen_index(row)
        if c is None:
            counts["dropped_no_safer_id"] += 1
            continue
        safe = (bool(row["is_response_0_safe"]), bool(row["is_response_1_safe"]))
        counts["one_safe" if safe[0] != safe[1] else ("both_safe" if safe[0] else "both_unsafe")] += 1
        meta = {k: row[k] for k in KEPT if k in row}
        meta["chosen_safe"], meta["rejected_safe"] = safe[c], safe[1 - c]
        index = where.get("index", where.get("line"))
        pairs.append(PreferencePair(f"pku-{split}-{index}", row["prompt"], row[f"response_{c}"], row[f"response_{1 - c}"], meta=meta))
    if not pairs:
        raise RealignError(f"{source}: no usable PKU-SafeRLHF rows ({counts['rows']} read)")
    return pairs, counts
