"""What every result file carries besides its figures: versions, machine and time, and what
produced it (the resolved settings and the content of the inputs, with one key over both)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from ..config import resolved
from ..modeling.sources import model_folder

_PACKAGES = ("trace-realign", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "openai")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def provenance() -> dict:
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "argv": sys.argv,
    }


# --------------------------------------------------------------------------- what produced an output


def input_digest(source: str | Path | None) -> str | None:
    """The content identity of a stage input: ``sha256:`` of a file's bytes; for a folder (a
    model, an adapter, a saved dataset) ``files:`` a hash of every file's relative name, size
    and modification time (so a retrained adapter is a new input); a hub name as it is (a model
    or adapter: :func:`model_digest`)."""
    if source is None:
        return None
    path = Path(str(source)).expanduser()
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return "sha256:" + digest.hexdigest()[:24]
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            stat = file.stat()
            digest.update(json.dumps([str(rel), stat.st_size, stat.st_mtime_ns]).encode())
        return "files:" + digest.hexdigest()[:24]
    return f"name:{source}"


def model_digest(source: str | Path | None) -> str | None:
    """The content identity of a model or adapter as it is loaded, however it is named: the
    :func:`input_digest` of the folder it is loaded from (a local folder, or for a hub id the
    cached snapshot its ``refs/main`` names: :func:`realign.modeling.sources.model_folder`), so a moved
    ``refs/main`` is a new input; a hub id not downloaded yet is its name."""
    if source is None:
        return None
    folder = model_folder(source)
    return input_digest(folder if folder is not None else source)


def produced_by(config, inputs: dict[str, Any], ignore: Iterable[str] = ()) -> dict:
    """What produces a stage's output: its resolved config (without the fields that cannot
    change the result, ``ignore``, and the input fields, which ``inputs`` replaces by their
    content identities) and the content of its inputs, with one ``key`` over both. Stages
    write it into their summary; skip, resume and partial files are used only when the key
    matches exactly."""
    settings = resolved(config)
    for name in (*ignore, *inputs):
        settings.pop(name, None)
    body = {"config": settings, "inputs": inputs}
    key = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"key": key, **body}


def what_changed(before: dict | None, now: dict) -> str:
    """One line naming what differs between two :func:`produced_by` records."""
    if not isinstance(before, dict) or "key" not in before:
        return "the existing output does not record what produced it"
    changed = []
    for part in ("config", "inputs"):
        old, new = before.get(part) or {}, now.get(part) or {}
        changed += [f"{'input' if part == 'inputs' else 'setting'} {k}"
                    for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "changed: " + ", ".join(changed) if changed else "produced by another version of the stage"
