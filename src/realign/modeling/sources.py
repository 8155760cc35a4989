"""Where a model comes from: a local folder or a hub id (its snapshot in the Hugging Face cache),
checked without loading, and the fingerprint that identifies what is loaded from there. A model
that cannot be found -- a missing directory, or a hub id that is not cached while
``HF_HUB_OFFLINE=1`` -- is one :class:`RealignError` line, not a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import RealignError


def is_local(name_or_path: str) -> bool:
    """A string that names a local path (as opposed to a hub id like ``org/name``)."""
    if Path(name_or_path).expanduser().exists():
        return True
    return (
        name_or_path.startswith((".", "/", "~"))
        or "\\" in name_or_path
        or name_or_path.count("/") > 1
        or os.path.isabs(name_or_path)
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_source(name_or_path: str, what: str) -> str:
    """``name_or_path`` as it is loaded from (a local folder with ``~`` expanded, a hub id as it is);
    a RealignError naming ``what`` for an empty name or a local path that is no folder."""
    name_or_path = str(name_or_path)
    if not name_or_path.strip():
        raise RealignError(f"{what}: no model given (set a hub id or a local path)")
    if is_local(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise RealignError(f"{what} {name_or_path!r}: no such directory")
        if not path.is_dir():
            raise RealignError(f"{what} {name_or_path!r}: not a directory (expected a saved model directory)")
        return str(path)
    return name_or_path


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def hub_snapshot(repo_id: str) -> Path | None:
    """The folder a hub id is loaded from: the snapshot of the Hugging Face cache that the
    repository's ``refs/main`` names (the revision ``from_pretrained`` loads), found offline
    through ``huggingface_hub``; None when the id is not cached (or is not a valid id)."""
    from huggingface_hub import try_to_load_from_cache

    for marker in ("config.json", "adapter_config.json"):  # a model's, an adapter's
        try:
            found = try_to_load_from_cache(repo_id, marker)
        except Exception:  # huggingface_hub's validation of the id: not a hub id
            return None
        if isinstance(found, str):
            return Path(found).parent
    return None


def model_folder(name_or_path: str | Path) -> Path | None:
    """The folder a model or adapter is loaded from, however it is named: a local folder as
    it is, a hub id as its cached snapshot (:func:`hub_snapshot`); None when there is none
    (a missing path, a hub id not downloaded yet)."""
    source = str(name_or_path)
    if is_local(source):
        path = Path(source).expanduser()
        return path if path.is_dir() else None
    return hub_snapshot(source)


def suggest_adapter_folder(source: str) -> None:
    """A training run's folder given where its adapter is meant: name the adapter inside it."""
    if not is_local(source):
        return
    path = Path(source)
    if not (path / "adapter_config.json").is_file() and (path / "adapter" / "adapter_config.json").is_file():
        raise RealignError(f"adapter {source!r}: that is a training run's folder; its adapter is {path / 'adapter'}")


def check_model_source(name_or_path: str, what: str = "model") -> None:
    """Raise the RealignError that loading would raise, without loading: a local folder must
    exist and hold ``config.json`` (``adapter_config.json`` for an adapter); a hub id must be in
    the Hugging Face cache when HF_HUB_OFFLINE=1 forbids downloading."""
    source = check_source(str(name_or_path), what)
    if what == "adapter":
        suggest_adapter_folder(source)
    if is_local(source):
        needed = "adapter_config.json" if what == "adapter" else "config.json"
        if not (Path(source) / needed).is_file():
            raise RealignError(f"{what} {name_or_path!r}: no {needed} in that directory")
    elif _offline() and not _in_hub_cache(source):
        raise RealignError(
            f"{what} {name_or_path!r}: not a local directory and not in the Hugging Face cache; "
            "HF_HUB_OFFLINE=1 forbids downloading it (download it first, or give a local path)"
        )


def load_error(name_or_path: str, what: str, exc: Exception) -> RealignError:
    """One line saying why loading failed and what to do."""
    if not is_local(name_or_path) and _offline() and not _in_hub_cache(name_or_path):
        return RealignError(
            f"{what} {name_or_path!r}: not a local directory and not in the Hugging Face cache; "
            "HF_HUB_OFFLINE=1 forbids downloading it (download it first, or give a local path)"
        )
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return RealignError(f"{what} {name_or_path!r}: cannot load: {first}")


_FINGERPRINT_TEXT = ("config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json")
_FINGERPRINT_STAT = (".safetensors", ".bin", ".json", ".model")


def model_fingerprint(name_or_path: str | Path) -> str | None:
    """A short hash of the folder a model is loaded from (:func:`model_folder`: a local
    folder, or a hub id's cached snapshot): the contents of its config, tokenizer config and
    chat template, and the name, size and modification time of its weight and tokenizer
    files -- so a retrained or re-saved model, or a hub id whose ``refs/main`` moved, gets a
    new fingerprint (and a new judge cache identity). None when there is no such folder."""
    path = model_folder(name_or_path)
    if path is None:
        return None
    digest = hashlib.sha256()
    for name in _FINGERPRINT_TEXT:
        file = path / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    for file in sorted(path.iterdir()):
        if file.is_file() and file.suffix in _FINGERPRINT_STAT and file.name not in _FINGERPRINT_TEXT:
            stat = file.stat()
            digest.update(json.dumps([file.name, stat.st_size, stat.st_mtime_ns]).encode())
    return digest.hexdigest()[:12]
