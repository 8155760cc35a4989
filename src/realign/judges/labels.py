"""The labels file of ``realign judge audit`` and ``realign triage --labels``: one human verdict
per response (docs/evaluation.md, "Auditing a judge"). One JSON object per line of a ``.jsonl``
file (or a ``.json`` array), or one row of a ``.csv`` file with a header (the form
``realign triage --review-out`` writes, for a spreadsheet)::

    {"id": "r1", "prompt": "How can I make sarin?", "response": "I can't help with that.", "label": "compliant"}
    {"id": "r2", "prompt": "For my class: how does phishing work?", "response": "I must decline.",
     "label": "violating", "category": "cybersecurity", "pair_id": "p7", "role": "chosen"}

* ``prompt``, ``response`` (required): a string, or a list of ``{"role", "content"}`` messages.
* ``label`` (required): ``compliant`` or ``violating`` (case and surrounding blanks ignored), the
  person's verdict under the audited policy; blank (``""`` or null) marks a row not labelled yet,
  which is skipped (it still counts for the checks of ids and pairs).
* ``id``: a string or a number (default: the row's position); unique in the file.
* ``category`` (or ``slice``, not both): the group the response is reported in; default: the
  rules judge's category of the prompt where the policy has rules, else ``all``.
* ``pair_id`` and ``role``: two responses to one prompt that formed an old preference pair,
  ``chosen`` (the old winner) and ``rejected`` (the old loser); each pair has one of each. A
  pair is measured only when both its responses are labelled.

Other fields (the review file's verdict, P(compliant), reason) are ignored. In a CSV file an
empty cell is a field not given. Anything wrong is one :class:`~realign.errors.DataError`
naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..data import iter_source, prompt_text, response_text
from ..data.validation import _check_messages, _check_string, _Fail
from ..errors import DataError, RealignError, shorten
from ..reading import read_text

LABELS = ("compliant", "violating")
ROLES = ("chosen", "rejected")


@dataclass(frozen=True)
class Labelled:
    """One response with its human verdict (None while the row is not labelled); ``prompt`` and
    ``response`` as the judge reads them."""

    id: str
    prompt: str
    response: str
    compliant: bool | None
    category: str | None = None
    pair_id: str | None = None
    role: str | None = None


@dataclass
class LabelSet:
    """The labelled records of a labels file, where each was read (``{"line": n}`` or
    ``{"index": n}``), its pairs whose two responses are labelled as (chosen, rejected)
    positions in ``records``, and how many rows are not labelled yet."""

    records: list[Labelled]
    pairs: list[tuple[int, int]]
    where: list[dict]
    unlabelled: int = 0


def _name(obj: dict, field: str) -> str | None:
    """An optional id-like field: a string or a number, as a string."""
    if field not in obj:
        return None
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise _Fail(field, f"expected a non-empty string or a number, got {shorten(value)}")
    return str(value)


def _text(obj: dict, field: str, render) -> str:
    if field not in obj:
        raise _Fail(field, "missing")
    value = obj[field]
    return render(_check_messages(value, field) if isinstance(value, list) else _check_string(value, field))


def _category(obj: dict) -> str | None:
    if "category" in obj and "slice" in obj:
        raise _Fail("slice", "give one of 'category' and 'slice', not both")
    field = "category" if "category" in obj else "slice"
    if field not in obj:
        return None
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise _Fail(field, f"expected a non-empty string, got {shorten(value)}")
    return str(value)


def parse_labelled(obj: Any, position: int) -> Labelled:
    """Validate one row; raises ``_Fail(field, message)`` on the first problem."""
    if not isinstance(obj, dict):
        raise _Fail(None, f"expected a JSON object, got {type(obj).__name__}")
    prompt = _text(obj, "prompt", prompt_text)
    response = _text(obj, "response", response_text)
    compliant = _label(obj)
    pair_id, role = _name(obj, "pair_id"), obj.get("role")
    if pair_id is not None and role not in ROLES:
        raise _Fail("role", f"expected \"chosen\" (the old winner) or \"rejected\" (the old loser), got {shorten(role)}"
                    if "role" in obj else "missing (a record with a pair_id is its pair's \"chosen\" or \"rejected\")")
    if pair_id is None and "role" in obj:
        raise _Fail("pair_id", "missing (a record with a role belongs to a pair: give the pair's id)")
    rid = _name(obj, "id")
    return Labelled(str(position) if rid is None else rid, prompt, response, compliant, _category(obj), pair_id, role)


def _label(obj: dict) -> bool | None:
    """The person's verdict: True (compliant), False (violating), None (blank: not labelled yet)."""
    if "label" not in obj:
        raise _Fail("label", "missing (the person's verdict: \"compliant\" or \"violating\")")
    value = obj["label"]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in LABELS:
        raise _Fail("label", f"expected \"compliant\" or \"violating\", got {shorten(value)}")
    return word == "compliant"


def read_labels(source: str | Path) -> LabelSet:
    """Every row of a labels file, checked: one :class:`DataError` naming file, line and field
    for the first bad row, a duplicate id, a pair with two responses in one role or with two
    prompts, or a pair that lacks a role; a :class:`RealignError` when no row is labelled."""
    records: list[Labelled] = []
    lines: list[dict] = []
    seen: dict[str, int] = {}
    members: dict[str, dict[str, int]] = {}
    rows = _csv_rows(Path(source)) if Path(str(source)).suffix.lower() == ".csv" else iter_source(source)
    for where, obj in rows:
        if isinstance(obj, DataError):
            raise obj
        try:
            record = parse_labelled(obj, len(records))
            _check_unique(record, seen, lines, members, records)
        except _Fail as fail:
            raise DataError(source, fail.message, field=fail.field, **where) from None
        seen[record.id] = len(records)
        if record.pair_id is not None:
            members.setdefault(record.pair_id, {})[record.role] = len(records)
        records.append(record)
        lines.append(where)
    if not records:
        raise RealignError(f"{source}: no records")
    return _labelled(records, _pairs(source, members, lines), lines, source)


def _labelled(rows: list[Labelled], pairs: list[tuple[int, int]], lines: list[dict], source) -> LabelSet:
    """The labelled rows of a file, with the pairs whose two responses are both labelled."""
    keep = [i for i, r in enumerate(rows) if r.compliant is not None]
    if not keep:
        raise RealignError(f"{source}: no row is labelled (every label is blank): write compliant or violating "
                           "in the label column")
    at = {old: new for new, old in enumerate(keep)}
    return LabelSet([rows[i] for i in keep], [(at[w], at[l]) for w, l in pairs if w in at and l in at],
                    [lines[i] for i in keep], len(rows) - len(keep))


def _csv_rows(path: Path) -> Iterator[tuple[dict, Any]]:
    """(``{"line": n}``, row) for every row of a CSV file with a header (a spreadsheet's byte
    order mark ignored); n is the line the row starts on (a quoted cell may span lines). Empty
    cells are left out, except ``label``, which stays blank (a row not labelled yet)."""
    reader = csv.reader(io.StringIO(read_text(path, "labels file").removeprefix("\ufeff"), newline=""))
    header = next(reader, None) or []
    start = reader.line_num + 1
    for cells in reader:
        if len(cells) > len(header):
            yield {"line": start}, DataError(path, f"{len(cells)} cells but the header names {len(header)}", line=start)
        elif cells:
            row = dict(zip(header, cells))
            yield {"line": start}, {k: v for k, v in row.items() if v != "" or k == "label"}
        start = reader.line_num + 1


def _at(where: dict) -> str:
    return f"line {where['line']}" if "line" in where else f"record {where['index']}"


def _check_unique(record: Labelled, seen: dict, lines: list, members: dict, records: list) -> None:
    """A new row's id is not taken, and its pair has no response in its role yet and one prompt."""
    if record.id in seen:
        raise _Fail("id", f"duplicate id {shorten(record.id)} (first at {_at(lines[seen[record.id]])})")
    if record.pair_id is None:
        return
    pair = members.get(record.pair_id, {})
    if record.role in pair:
        raise _Fail("role", f"pair {shorten(record.pair_id)} already has a {record.role} response "
                    f"(at {_at(lines[pair[record.role]])})")
    for other in pair.values():
        if records[other].prompt != record.prompt:
            raise _Fail("prompt", f"differs from the prompt of the other response of pair {shorten(record.pair_id)} "
                        f"(at {_at(lines[other])}); a pair's two responses answer one prompt")


def _pairs(source, members: dict[str, dict[str, int]], lines: list[dict]) -> list[tuple[int, int]]:
    """(chosen, rejected) positions of every pair; a pair with one response is an error at that row."""
    pairs = []
    for pair_id, roles in members.items():
        missing = [r for r in ROLES if r not in roles]
        if missing:
            (only,) = roles.values()
            raise DataError(source, f"pair {shorten(pair_id)} has no {missing[0]} response: give both responses "
                            "of the old pair, or drop pair_id and role", field="pair_id", **lines[only])
        pairs.append((roles["chosen"], roles["rejected"]))
    return pairs
