"""Preference records: types, reading (JSONL, JSON arrays, Hugging Face datasets), validation
and atomic writing.

Accepted formats (TRL's, https://huggingface.co/docs/trl/dataset_formats):

* standard:        ``{"prompt": str, "chosen": str, "rejected": str}``
* conversational:  ``prompt``, ``chosen`` and ``rejected`` are lists of ``{"role", "content"}``
  messages; ``prompt`` may be omitted, in which case it is the messages ``chosen`` and
  ``rejected`` share before they differ (TRL's implicit prompt).

Triaged records (Stage 1) add ``category`` (INVERT / PUNISH / RETAIN), ``swapped``,
``verdicts`` on the stored chosen and rejected response and optionally ``oracle`` (an oracle's
compliant response y_c for a PUNISH pair) or ``corrective`` (a y_c found without an oracle, with
where it came from: ``{"response", "source", "judge", "verdict", ...}``,
:mod:`realign.triage.corrective`); Stage 2 adds ``impact``. Other fields are kept
under ``meta`` and written back unchanged.

**One order in memory.** Every INVERT record read is held *swapped*: ``chosen`` is the response
that complies with the new policy (the old loser), ``rejected`` the old winner, ``swapped`` is
true — whatever order its file stored, so no method has to ask. The stored order comes from the
record itself (``swapped``; the reference implementation's DPO-Gold lists
``chosen_violations`` / ``rejected_violations``; our ``verdicts``) or, for files that do not
say (the reference implementation's ``*_triage.json`` keeps INVERT pairs in their original
order), from the reader's ``invert_order`` (``--invert-order original|swapped``); an INVERT
record whose order is unknown is an error naming that flag.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Union

from .errors import DataError, RealignError, shorten
from .files import write_jsonl

#: A triaged record's category (Alg. 1 lines 3-6; :func:`realign.triaged.categorise`): INVERT, the
#: old winner violates the new policy and the loser complies (held swapped); PUNISH, both violate;
#: RETAIN, the old winner still complies.
Category = Literal["INVERT", "PUNISH", "RETAIN"]
INVERT: Category = "INVERT"
PUNISH: Category = "PUNISH"
RETAIN: Category = "RETAIN"
CATEGORIES: tuple[Category, ...] = (INVERT, PUNISH, RETAIN)
#: the conflict records' categories: those Stage 2 scores and Stage 3 weights (:mod:`realign.objective`)
CONFLICT: tuple[Category, ...] = (INVERT, PUNISH)
ROLES = ("system", "user", "assistant", "tool")

Message = dict[str, str]
Text = Union[str, list[Message]]

_KNOWN = {"id", "prompt", "chosen", "rejected", "category", "swapped", "verdicts", "oracle", "corrective", "impact",
          "meta"}
#: the largest ``impact`` a record may carry: training multiplies each term's loss by its weight
#: in float32, where a larger value is infinite (and the loss with it)
LARGEST_WEIGHT = 3.4028234663852886e38
#: how a file stores INVERT pairs: ``original`` (chosen = the old winner, which now violates) or
#: ``swapped`` (chosen = the compliant old loser, as ``realign triage`` writes them)
INVERT_ORDERS = ("original", "swapped")


@dataclass
class PreferencePair:
    """One preference pair (x, y_w, y_l), possibly triaged and scored."""

    id: str
    prompt: Text
    chosen: Text
    rejected: Text
    category: Category | None = None
    swapped: bool = False
    verdicts: dict[str, dict] | None = None
    oracle: Text | None = None
    impact: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    corrective: dict[str, Any] | None = None

    @property
    def conversational(self) -> bool:
        return isinstance(self.chosen, list)

    @property
    def y_c(self) -> Text | None:
        """The compliant response a PUNISH pair is trained towards: the oracle's when there is
        one, else the corrective response found without an oracle, else None (dual NPO)."""
        if self.oracle is not None:
            return self.oracle
        return self.corrective["response"] if self.corrective is not None else None

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.category is not None:
            rec["category"] = self.category
            rec["swapped"] = self.swapped
        if self.verdicts is not None:
            rec["verdicts"] = self.verdicts
        if self.oracle is not None:
            rec["oracle"] = self.oracle
        if self.corrective is not None:
            rec["corrective"] = self.corrective
        if self.impact is not None:
            rec["impact"] = self.impact
        if self.meta:
            rec["meta"] = self.meta
        return rec


# --------------------------------------------------------------------------- text helpers


def prompt_text(prompt: Text) -> str:
    """The prompt as plain text for a judge: a string as is; a conversation rendered by turn."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt)


def response_text(response: Text) -> str:
    """The response as plain text: a string as is; the content of its messages joined."""
    if isinstance(response, str):
        return response
    return "\n\n".join(m["content"] for m in response)


def as_response(text: str, like: Text) -> Text:
    """``text`` in the same format as ``like`` (a string, or one assistant message)."""
    return text if isinstance(like, str) else [{"role": "assistant", "content": text}]


# --------------------------------------------------------------------------- validation


class _Fail(Exception):
    def __init__(self, field: str | None, message: str) -> None:
        self.field, self.message = field, message


def _lone_surrogate(value: str) -> str | None:
    """The first lone surrogate (``"\\ud800"`` in JSON) in ``value``: not a character, and no
    file or tokenizer can take it (UTF-8 cannot encode it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return value[exc.start]
    return None


def _check_string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _Fail(name, f"expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise _Fail(name, "contains a NUL byte")
    bad = _lone_surrogate(value)
    if bad is not None:
        raise _Fail(name, f"contains a lone surrogate (\\u{ord(bad):04x}): not a character; fix the text's encoding")
    if not value.strip():
        raise _Fail(name, "is empty" if not value else "is whitespace only")
    return value


def _check_messages(value: Any, name: str) -> list[Message]:
    if not value:
        raise _Fail(name, "is an empty list of messages")
    out = []
    for i, msg in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(msg, dict):
            raise _Fail(where, f"expected a message object, got {type(msg).__name__}")
        if "role" not in msg:
            raise _Fail(f"{where}.role", "missing")
        if msg["role"] not in ROLES:
            raise _Fail(f"{where}.role", f"unknown role {shorten(msg['role'])} (expected one of {', '.join(ROLES)})")
        if "content" not in msg:
            raise _Fail(f"{where}.content", "missing")
        _check_string(msg["content"], f"{where}.content")
        out.append({"role": msg["role"], "content": msg["content"]})
    return out


def _check_text(value: Any, name: str, conversational: bool) -> Text:
    if conversational:
        if not isinstance(value, list):
            raise _Fail(name, f"expected a list of messages (the record is conversational), got {type(value).__name__}")
        return _check_messages(value, name)
    if isinstance(value, list):
        raise _Fail(name, "is a list of messages but the record is in standard (string) format")
    return _check_string(value, name)


def _split_implicit_prompt(chosen: list[Message], rejected: list[Message]) -> tuple[list[Message], list, list]:
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    while n > 0 and chosen[n - 1]["role"] == "assistant":  # the prompt ends before the answer
        n -= 1
    if n == 0:
        raise _Fail("prompt", "missing, and chosen and rejected share no prompt messages")
    return chosen[:n], chosen[n:], rejected[n:]


def _record_id(prompt: Text, chosen: Text, rejected: Text) -> str:
    blob = json.dumps([prompt, chosen, rejected], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _check_verdicts(value: Any) -> dict[str, dict]:
    if not isinstance(value, dict):
        raise _Fail("verdicts", f"expected an object, got {type(value).__name__}")
    for side in ("chosen", "rejected"):
        v = value.get(side)
        if not isinstance(v, dict):
            raise _Fail(f"verdicts.{side}", "missing or not an object")
        if not (v.get("compliant") is None or isinstance(v.get("compliant"), bool)):
            raise _Fail(f"verdicts.{side}.compliant", "expected true, false or null")
        p = v.get("p_compliant")
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0):
            raise _Fail(f"verdicts.{side}.p_compliant", f"expected a probability in [0, 1], got {shorten(p)}")
    return value


def _check_corrective(value: Any, conversational: bool) -> dict[str, Any]:
    """A corrective response: an object with the ``response`` (like the record's responses) and
    its ``source``."""
    if not isinstance(value, dict):
        raise _Fail("corrective", f"expected an object, got {type(value).__name__}")
    if "response" not in value:
        raise _Fail("corrective.response", "missing")
    _check_text(value["response"], "corrective.response", conversational)
    if not isinstance(value.get("source"), str) or not value["source"]:
        raise _Fail("corrective.source", f"expected a non-empty string, got {shorten(value.get('source'))}")
    return value


def _stated_order(obj: dict, verdicts: dict[str, dict] | None) -> str | None:
    """The order an INVERT record says it is stored in, or None when it does not say."""
    if "swapped" in obj:
        return "swapped" if obj["swapped"] else "original"
    chosen_v, rejected_v = obj.get("chosen_violations"), obj.get("rejected_violations")
    if isinstance(chosen_v, list) and isinstance(rejected_v, list) and bool(chosen_v) != bool(rejected_v):
        return "original" if chosen_v else "swapped"
    sides = [((verdicts or {}).get(side) or {}).get("compliant") for side in ("chosen", "rejected")]
    if sides in ([True, False], [False, True]):
        return "swapped" if sides[0] else "original"
    return None


def _in_memory_order(pair: PreferencePair, stated: str | None, invert_order: str | None) -> PreferencePair:
    """Hold an INVERT record swapped (module docstring); other records as stored."""
    if pair.category != INVERT:
        if pair.swapped:
            raise _Fail("swapped", f"only INVERT records are stored swapped, this one is {pair.category or 'untriaged'}")
        return pair
    order = stated or invert_order
    if order is None:
        raise _Fail(
            "swapped",
            "INVERT record without a stored order: is `chosen` still the old winner? Pass "
            "--invert-order original if so (e.g. the reference implementation's *_triage.json), "
            "--invert-order swapped if INVERT pairs were already swapped (chosen = the compliant response), "
            "or add \"swapped\": true/false to each INVERT record",
        )
    if order == "swapped":
        pair.swapped = True
        return pair
    pair.chosen, pair.rejected = pair.rejected, pair.chosen
    if pair.verdicts:
        pair.verdicts = {"chosen": pair.verdicts.get("rejected"), "rejected": pair.verdicts.get("chosen")}
        pair.verdicts = {k: v for k, v in pair.verdicts.items() if v is not None}
    a, b = "chosen_violations", "rejected_violations"  # the reference implementation's per-side lists
    if a in pair.meta or b in pair.meta:
        pair.meta[a], pair.meta[b] = pair.meta.pop(b, None), pair.meta.pop(a, None)
    pair.swapped = True
    return pair


def parse_record(obj: Any, invert_order: str | None = None) -> PreferencePair:
    """Validate one record; raises ``_Fail`` (field, message) on the first problem. INVERT
    records come back held swapped (see the module docstring; ``invert_order`` is the order
    assumed where a record does not state one)."""
    if not isinstance(obj, dict):
        raise _Fail(None, f"expected a JSON object, got {type(obj).__name__}")
    for name in ("chosen", "rejected"):
        if name not in obj:
            raise _Fail(name, "missing")
    conversational = isinstance(obj["chosen"], list)
    chosen = _check_text(obj["chosen"], "chosen", conversational)
    rejected = _check_text(obj["rejected"], "rejected", conversational)
    if "prompt" in obj and obj["prompt"] is not None:
        prompt = _check_text(obj["prompt"], "prompt", conversational)
    elif conversational:
        prompt, chosen, rejected = _split_implicit_prompt(chosen, rejected)
        if not chosen or not rejected:
            raise _Fail("chosen" if not chosen else "rejected", "has no response after the shared prompt")
    else:
        raise _Fail("prompt", "missing (an implicit prompt is only supported for conversational records)")

    rid = obj.get("id")
    if rid is None:
        rid = _record_id(prompt, chosen, rejected)
    elif isinstance(rid, bool) or not isinstance(rid, (str, int)) or not str(rid).strip():
        raise _Fail("id", f"expected a non-empty string or integer, got {shorten(rid)}")

    category = obj.get("category")
    if category is not None and category not in CATEGORIES:
        raise _Fail("category", f"unknown category {shorten(category)} (expected one of {', '.join(CATEGORIES)})")
    swapped = obj.get("swapped", False)
    if not isinstance(swapped, bool):
        raise _Fail("swapped", f"expected true or false, got {shorten(swapped)}")
    verdicts = _check_verdicts(obj["verdicts"]) if obj.get("verdicts") is not None else None
    oracle = _check_text(obj["oracle"], "oracle", conversational) if obj.get("oracle") is not None else None
    corrective = _check_corrective(obj["corrective"], conversational) if obj.get("corrective") is not None else None
    impact = obj.get("impact")
    if impact is not None:
        if isinstance(impact, bool) or not isinstance(impact, (int, float)):
            raise _Fail("impact", f"expected a number, got {type(impact).__name__}")
        if not math.isfinite(impact) or impact < 0:
            raise _Fail("impact", f"must be a finite number >= 0, got {shorten(impact)}")
        if impact > LARGEST_WEIGHT:
            raise _Fail("impact", f"{impact:.3g} overflows the float32 weight training multiplies the loss by (at most "
                                  f"{LARGEST_WEIGHT:.3g}; `realign score` writes normalised weights, averaging or "
                                  "summing to 1): fix or rescore the weighted file")
        impact = float(impact)
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise _Fail("meta", f"expected an object, got {type(meta).__name__}")
    meta = {**meta, **{k: v for k, v in obj.items() if k not in _KNOWN}}
    pair = PreferencePair(str(rid), prompt, chosen, rejected, category, swapped, verdicts, oracle, impact, meta,
                          corrective)
    return _in_memory_order(pair, _stated_order(obj, verdicts) if category == INVERT else None, invert_order)


# --------------------------------------------------------------------------- reading


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


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _Duplicated(dict):
    """A JSON object that held a key twice (``json`` keeps the last one silently)."""

    duplicate: str


def _first_duplicate(pairs: list[tuple[str, Any]]) -> str | None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` of a JSONL line: a key given twice is an error."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey(_first_duplicate(pairs))
    return obj


def _mark_duplicates(marked: list[str]) -> Callable[[list[tuple[str, Any]]], dict]:
    """``object_pairs_hook`` of a JSON array: marks an object that had a key twice (and notes
    it in ``marked``), so the record holding it is reported by its index."""

    def hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            obj = _Duplicated(obj)
            obj.duplicate = _first_duplicate(pairs)
            marked.append(obj.duplicate)
        return obj

    return hook


def _duplicate_in(value: Any) -> str | None:
    if isinstance(value, _Duplicated):
        return value.duplicate
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        found = _duplicate_in(child)
        if found is not None:
            return found
    return None


def _duplicate_message(key: str) -> str:
    return f"key {shorten(key)} appears twice in one object (JSON would keep only the last, silently): keep one"


def _surrogate_field(value: Any, where: str = "") -> str | None:
    """Where (``prompt``, ``meta.note``, ``chosen[1].content``) the first string holding a lone
    surrogate is, if any; None when every string is valid Unicode."""
    if isinstance(value, str):
        return (where or "(top level)") if _lone_surrogate(value) is not None else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _surrogate_field(k, where) or _surrogate_field(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _surrogate_field(v, f"{where}[{i}]")
            if found:
                return found
    return None


SURROGATE = "contains a lone surrogate (a \\ud800-\\udfff escape without its pair): not a character; fix the text's encoding"
TOO_DEEP = "invalid JSON: nested too deeply (arrays or objects inside each other beyond Python's recursion limit)"


def _jsonl_objects(path: Path) -> Iterator[tuple[dict, Any]]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = {"line": lineno}
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, DataError(path, f"not valid UTF-8 ({exc.reason} at byte {exc.start})", line=lineno)
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line, object_pairs_hook=_refuse_duplicates)
            except json.JSONDecodeError as exc:
                yield where, DataError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=lineno)
            except RecursionError:
                yield where, DataError(path, TOO_DEEP, line=lineno)
            except _DuplicateKey as dup:
                yield where, DataError(path, _duplicate_message(dup.key), line=lineno, field=dup.key)
            else:
                bad = _surrogate_field(obj) if "\\u" in line else None
                yield where, (DataError(path, SURROGATE, line=lineno, field=bad) if bad else obj)


def _json_array_objects(path: Path) -> Iterator[tuple[dict, Any]]:
    marked: list[str] = []
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=_mark_duplicates(marked))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    except RecursionError:
        raise DataError(path, TOO_DEEP) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        if isinstance(data, _Duplicated):
            raise DataError(path, _duplicate_message(data.duplicate), field=data.duplicate)
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(path, "a .json data file must hold an array of records (or {\"data\": [...]})")
    for index, obj in enumerate(data):
        duplicate = _duplicate_in(obj) if marked else None
        bad = _surrogate_field(obj) if duplicate is None else None
        if duplicate is not None:
            yield {"index": index}, DataError(path, _duplicate_message(duplicate), index=index, field=duplicate)
        elif bad is not None:
            yield {"index": index}, DataError(path, SURROGATE, index=index, field=bad)
        else:
            yield {"index": index}, obj


def _dataset_objects(source: str, split: str) -> Iterator[tuple[dict, Any]]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise RealignError("reading Hugging Face datasets needs the 'datasets' package") from None
    path = Path(source)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise RealignError(f"{source}: no split {split!r} (available: {', '.join(ds)})")
                ds = ds[split]
        elif path.is_file():
            builder = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}[path.suffix]
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        else:
            name, _, config = source.removeprefix("hf:").partition(":")
            ds = datasets.load_dataset(name, config or None, split=split)
    except RealignError:
        raise
    except Exception as exc:  # datasets raises many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RealignError(f"{source}: cannot load dataset: {first}") from None
    for index, obj in enumerate(ds):
        yield {"index": index}, obj


def iter_source(source: str | Path, split: str = "train") -> Iterator[tuple[dict, Any]]:
    """Yield (location, object) for every record of a file or dataset, in order."""
    text = str(source)
    path = Path(text)
    if text.startswith("hf:"):
        return _dataset_objects(text, split)
    if path.suffix == ".jsonl" or (path.is_file() and path.suffix not in (".json", ".parquet", ".csv", ".arrow")):
        if not path.exists():
            raise RealignError(f"{path}: file not found")
        return _jsonl_objects(path)
    if path.suffix == ".json":
        if not path.exists():
            raise RealignError(f"{path}: file not found")
        return _json_array_objects(path)
    if path.exists():
        return _dataset_objects(text, split)
    if "/" in text and not text.startswith((".", "/")) and text.count("/") == 1:
        return _dataset_objects(text, split)  # looks like a hub name: org/name
    raise RealignError(f"{path}: file not found")


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
