"""Reading a whole source into validated records (:func:`read_pairs`: bad records raised or
skipped, exact duplicates left out, one id with two contents refused) and writing records
back (:func:`write_pairs`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import DataError, RealignError, shorten
from ..runs.files import write_jsonl
from .records import PreferencePair
from .sources import iter_source
from .validation import INVERT_ORDERS, _Fail, parse_record


@dataclass
class LoadResult:
    pairs: list[PreferencePair]
    skipped: list[DataError]
    source: str
    #: records left out as exact duplicates of an earlier one (same id and content)
    duplicates: int = 0

    def duplicates_line(self) -> str | None:
        """One line saying how many exact duplicates were left out (None: there were none)."""
        if not self.duplicates:
            return None
        return (f"{self.source}: {self.duplicates} exact duplicate record(s) left out (the same id and content as an "
                "earlier record)")


def read_pairs(
    source: str | Path,
    *,
    split: str = "train",
    skip_invalid: bool = False,
    require_category: bool = False,
    invert_order: str | None = None,
    on_skip: Callable[[DataError], None] | None = None,
) -> LoadResult:
    """Read and validate every record of ``source``.

    The first bad record raises :class:`DataError` naming file, line (or index) and field,
    unless ``skip_invalid``, in which case bad records are collected in ``skipped`` (and
    passed to ``on_skip``). A record equal to an earlier one in every field (a record without
    an id takes the hash of its prompt and responses as id) is left out and counted in
    ``duplicates``: real datasets repeat pairs. Two records with one id and different content
    are a bad record: an id names one record. INVERT records come back held
    swapped; ``invert_order`` (one of :data:`INVERT_ORDERS`) is the stored order assumed for
    records that do not state theirs.
    """
    if invert_order is not None and invert_order not in INVERT_ORDERS:
        raise RealignError(f"invert order must be one of {', '.join(INVERT_ORDERS)}, got {invert_order!r}")
    pairs: list[PreferencePair] = []
    skipped: list[DataError] = []
    seen: dict[str, tuple[str, PreferencePair]] = {}
    duplicates = 0

    def bad(err: DataError) -> None:
        if not skip_invalid:
            raise err
        skipped.append(err)
        if on_skip is not None:
            on_skip(err)

    for where, obj in iter_source(source, split):
        if isinstance(obj, DataError):
            bad(obj)
            continue
        try:
            pair = parse_record(obj, invert_order)
            if require_category and pair.category is None:
                raise _Fail("category", "missing (this stage needs triaged records; run `realign triage` first)")
        except _Fail as fail:
            bad(DataError(source, fail.message, field=fail.field, **where))
            continue
        if pair.id in seen:
            clash = _id_clash(source, where, obj, pair, *seen[pair.id])
            if clash is None:  # an exact duplicate
                duplicates += 1
            else:
                bad(clash)
            continue
        seen[pair.id] = (f"line {where['line']}" if "line" in where else f"record {where['index']}", pair)
        pairs.append(pair)
    if not pairs and not skipped:
        raise RealignError(f"{source}: no records")
    return LoadResult(pairs, skipped, str(source), duplicates)


def _id_clash(source, where: dict, obj: dict, pair: PreferencePair, first_at: str,
              first: PreferencePair) -> DataError | None:
    """None when ``pair`` is an exact duplicate of the record with its id read first (at
    ``first_at``); else the error naming the field in which they differ."""
    if pair == first:
        return None
    differs = _first_difference(first.to_record(), pair.to_record())
    differs = differs if len(differs) <= 80 else differs[:77] + "..."  # a key may be long
    if obj.get("id") is not None:
        return DataError(source, f"duplicate record id {shorten(pair.id)} (first at {first_at}) with other content "
                                 f"('{differs}' differs): an id names one record; give each its own id, or drop one",
                         field="id", **where)
    # without an id, the id is the hash of the prompt and responses: the same as the first's
    return DataError(source, f"the same prompt and responses as {first_at}, with another value here: give the records "
                             "ids, or drop one", field=differs, **where)


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    """The first field (``prompt``, ``meta.source``, ``chosen[1].content``) where two records differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return where or "(the record)"


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> int:
    """Write records as JSONL atomically (temp file, then rename)."""
    return write_jsonl(path, (p.to_record() for p in pairs))
