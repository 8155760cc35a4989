"""Atomic file output: every file is written to a temporary sibling and renamed into place,
so an interrupted process leaves either the old file or the complete new one."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

_UMASK = os.umask(0)
os.umask(_UMASK)


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TEMP_OWNER = re.compile(r"^(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.")
#: a temporary file without an owner in its name (written before owners were recorded) is
#: taken as abandoned once it is this old
_UNOWNED_TEMP_AGE_S = 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_abandoned_temps(path: Path) -> list[Path]:
    """Delete the temporary siblings ``.NAME.<host>-<pid>.*.tmp`` of ``path`` that a killed
    writer left behind (SIGKILL, power loss: no ``finally`` ran): those of this host whose
    process is gone, and owner-less ones older than an hour. A live writer's file is kept,
    also one of another host sharing the folder. Returns what was removed."""
    removed = []
    prefix = f".{path.name}."
    try:
        candidates = [c for c in path.parent.iterdir() if c.name.startswith(prefix) and c.name.endswith(".tmp")]
    except OSError:
        return removed
    for candidate in candidates:
        owner = _TEMP_OWNER.match(candidate.name[len(prefix):])
        try:
            if owner is not None:
                if owner["host"] != _HOST or _alive(int(owner["pid"])):
                    continue
            elif time.time() - candidate.stat().st_mtime < _UNOWNED_TEMP_AGE_S:
                continue
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            continue
    return removed


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync and rename it onto ``path``.
    The temporary file's name records its writer (host and process id), so the next write
    to ``path`` removes what a killed writer left (:func:`remove_abandoned_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as fh:
        yaml.safe_dump(obj, fh, sort_keys=False, allow_unicode=True)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write one JSON object per line; returns the number of rows."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")
            n += 1
    return n
