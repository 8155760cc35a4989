"""Raw records from a source, in order, each with its location: JSONL lines, a JSON array (or
``{"data": [...]}``), a saved Hugging Face dataset, a Parquet/CSV/Arrow file or a hub dataset.
A line or item that cannot be read (bad UTF-8, invalid JSON, a key given twice, a lone
surrogate) comes as the :class:`~realign.errors.DataError` naming it, for the reader to raise
or skip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DataError, RealignError, shorten
from .validation import _lone_surrogate


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

