"""Review and correct a triage before it trains anything (README, "Choosing and checking a judge"):

* ``--review N --review-out FILE`` writes the N judge verdicts most likely wrong — where a second
  judge (``--second-judge``) disagrees first, then the least confident (|P(compliant) − 0.5|
  smallest; an abstention counts as no confidence at all, a verdict without P as full
  confidence) — as a CSV (or JSONL) a person labels in a spreadsheet or text editor. The file
  is a labels file as it stands (:mod:`realign.judges.labels`: ``prompt``, ``response``, a
  blank ``label``), read by ``realign triage --labels`` and ``realign judge audit --labels``;
* ``--labels FILE`` puts a person's verdicts over the judge's for the (prompt, response) items
  they name, before the pairs are categorised; each verdict of the triaged records says who
  decided it (``decided_by``: the judge's identity, or ``human``).
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config import UnparseableRule
from ..errors import DataError
from ..runs.files import write_jsonl, write_text
from ..judges.audit import triage_category, verdict_name
from ..judges.base import JudgeItem, Verdict
from ..judges.labels import Labelled, read_labels
from ..judges.store import settle
from .judging import HUMAN, Judged

#: the columns of a review file, in order; ``label`` is left blank for the person
REVIEW_FIELDS = ("id", "pair_id", "role", "prompt", "response", "verdict", "p_compliant", "second_verdict",
                 "reason", "label")
#: the review file formats, by suffix
REVIEW_SUFFIXES = (".csv", ".jsonl")


@dataclass
class HumanLabels:
    """A labels file's verdicts by (prompt, response) item, and its counts."""

    path: Path
    by_item: dict[JudgeItem, Labelled]
    unlabelled: int


def read_human_labels(path: str | Path) -> HumanLabels:
    """The labelled rows of ``path`` (:func:`realign.judges.labels.read_labels`; blank labels
    skipped) by item. One response labelled both ways is a :class:`DataError` at the second row."""
    labels = read_labels(path)
    by_item: dict[JudgeItem, Labelled] = {}
    first: dict[JudgeItem, dict] = {}
    for record, where in zip(labels.records, labels.where):
        item = JudgeItem(record.prompt, record.response)
        if item in by_item and by_item[item].compliant != record.compliant:
            at = first[item].get("line", first[item].get("index"))
            raise DataError(path, f"labels the response of id {by_item[item].id!r} (line {at}) the other way: "
                            "one response, one verdict", field="label", **where)
        by_item.setdefault(item, record)
        first.setdefault(item, where)
    return HumanLabels(Path(path), by_item, labels.unlabelled)


def apply_labels(judged: Judged, labels: HumanLabels, rule: UnparseableRule) -> dict:
    """Put each label over the judge's verdict of its item (``decided_by`` = ``human``) and
    count: labels ``applied``, ``verdicts_changed`` (the label differs from the judge's verdict
    as the ``on_unparseable`` rule settles it), ``pairs_recategorised`` (INVERT / PUNISH /
    RETAIN / dropped differs), and labels for items ``not_in_data`` (said on stderr)."""
    applied, changed, missing = 0, 0, []
    for item, label in labels.by_item.items():
        i = judged.index.get(item)
        if i is None:
            missing.append(label.id)
            continue
        changed += settle(judged.by_judge[i], rule) != label.compliant
        judged.verdicts[i] = Verdict(label.compliant, None, f"label {label.id} of {labels.path.name}")
        judged.decided_by[i] = HUMAN
        applied += 1
    recategorised = 0
    for pair in judged.pairs:
        w, l = judged.positions(pair)
        before = triage_category(settle(judged.by_judge[w], rule), settle(judged.by_judge[l], rule))
        recategorised += before != triage_category(settle(judged.verdicts[w], rule), settle(judged.verdicts[l], rule))
    if missing:
        print(f"warning: {labels.path}: {len(missing)} labelled responses are not in the data (ids "
              f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): not applied", file=sys.stderr)
    return {"file": str(labels.path), "labelled": len(labels.by_item), "unlabelled_rows": labels.unlabelled,
            "applied": applied, "verdicts_changed": changed, "pairs_recategorised": recategorised,
            "not_in_data": len(missing), "not_in_data_examples": missing[:20]}


def _confidence(verdict: Verdict) -> float:
    """How sure the judge is of a verdict: |P(compliant) − 0.5|; 0 for an abstention, 0.5 (the
    most) for a verdict without P."""
    if verdict.abstained:
        return 0.0
    return 0.5 if verdict.p_compliant is None else abs(verdict.p_compliant - 0.5)


def review_order(judged: Judged, second: Sequence[Verdict] | None = None) -> list[int]:
    """The judge-decided items, most likely wrong first: those the second judge's verdict
    differs on (``second``, one per item), then by :func:`_confidence`, then in data order."""

    def key(i: int) -> tuple:
        agrees = second is None or second[i].compliant == judged.verdicts[i].compliant
        return agrees, _confidence(judged.verdicts[i]), i

    return sorted((i for i in range(len(judged.items)) if judged.decided_by[i] != HUMAN), key=key)


def review_rows(judged: Judged, picked: Sequence[int], second: Sequence[Verdict] | None = None) -> list[dict]:
    """One row per picked item (:data:`REVIEW_FIELDS`), ``label`` blank. ``id`` is the first
    pair the response is in and its role there (``p7:chosen``: chosen = the old winner);
    ``pair_id`` and ``role`` are filled where both responses of that pair are picked, so the file
    reads as a labels file whose complete pairs ``realign judge audit`` measures."""
    where: dict[int, tuple[str, str]] = {}
    for pair in judged.pairs:
        for i, role in zip(judged.positions(pair), ("chosen", "rejected")):
            where.setdefault(i, (pair.id, role))
    shown = {where[i][0] for i in picked}
    complete = {p for p in shown if sum(where[i][0] == p for i in picked) == 2}
    rows = []
    for i in picked:
        pair_id, role = where[i]
        v = judged.verdicts[i]
        rows.append({"id": f"{pair_id}:{role}", "pair_id": pair_id if pair_id in complete else None,
                     "role": role if pair_id in complete else None, "prompt": judged.items[i].prompt,
                     "response": judged.items[i].response, "verdict": verdict_name(v.compliant),
                     "p_compliant": v.p_compliant,
                     "second_verdict": verdict_name(second[i].compliant) if second is not None else None,
                     "reason": v.raw, "label": ""})
    return rows


def write_review(path: str | Path, rows: list[dict]) -> None:
    """The rows as CSV (a header, empty cells for missing values) or JSONL (missing values
    left out), by the suffix of ``path``, written atomically."""
    if Path(path).suffix.lower() == ".csv":
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=REVIEW_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        write_text(path, text.getvalue())
    else:
        write_jsonl(path, ({k: v for k, v in row.items() if v is not None} for row in rows))
