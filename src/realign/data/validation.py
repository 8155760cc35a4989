"""Validating one record: :func:`parse_record` checks a raw object against the record model
(:mod:`realign.data.records`), names the field of its first problem, and holds an INVERT record
swapped (the package docstring, "One order in memory")."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from ..errors import shorten
from .records import CATEGORIES, INVERT, Message, PreferencePair, Text

ROLES = ("system", "user", "assistant", "tool")

_KNOWN = {"id", "prompt", "chosen", "rejected", "category", "swapped", "verdicts", "oracle", "corrective", "impact",
          "meta"}
#: the largest ``impact`` a record may carry: training multiplies each term's loss by its weight
#: in float32, where a larger value is infinite (and the loss with it)
LARGEST_WEIGHT = 3.4028234663852886e38
#: how a file stores INVERT pairs: ``original`` (chosen = the old winner, which now violates) or
#: ``swapped`` (chosen = the compliant old loser, as ``realign triage`` writes them)
INVERT_ORDERS = ("original", "swapped")


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

