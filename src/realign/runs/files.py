"""Atomic file output: every file is written to a temporary sibling and renamed into place,
so an interrupted process leaves either the old file or the complete new one. Output paths
that would overwrite an input or another output are refused first (:func:`check_output_paths`),
and one process at a time writes into a run folder (:func:`folder_lock`)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from ..errors import RealignError

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
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:  # a write on a full disk names no file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
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


# --------------------------------------------------------------------------- output paths

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _same(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file: equal real paths, or (both existing) one device and inode
    (a symlink or a hard link to the other)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies below it, however either is spelled (``./``, a trailing
    slash, symlinks, ``..``), also when the folder is reached through another mount of it
    (same device and inode as one of the folders above ``path``)."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
        return True
    try:
        target = os.stat(folder)
    except OSError:
        return False
    for above in (Path(real), *Path(real).parents):
        try:
            st = os.stat(above)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def _check_writable(name: str, path: Path) -> None:
    """The folder an output is renamed into (or the nearest existing folder above it) can take
    new files: checked before any work, not after it (a read-only folder or file system)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise RealignError(f"{name} {path} cannot be written: {folder} is read-only (no permission or a read-only "
                           "file system); give a writable path")


def _named(paths: dict[str, str | Path | None] | None) -> list[tuple[str, Path]]:
    return [(name, Path(p)) for name, p in (paths or {}).items() if p is not None and str(p) != ""]


def check_output_paths(
    inputs: dict[str, str | Path | None],
    outputs: dict[str, str | Path | None],
    directories: dict[str, str | Path | None] | None = None,
) -> None:
    """Refuse, before any work, output paths that would destroy an input or another output:
    the one guard of every command that writes.

    ``inputs``, ``outputs`` and ``directories`` map a name for messages (``"--data"``, ``"the
    summary of --out"``) to a path; ``None`` values are ignored. ``outputs`` are files the command
    writes (by renaming a new file into place); ``directories`` are folders it fills or
    replaces (a run folder, a saved model). It is a :class:`RealignError` (one line, naming both)
    when an output is the same file as an input or as another output (equal real paths, or one
    inode: a symlink or hard link counts); when an input is an output directory or lies inside
    one; when an output file or directory lies inside an input that is a folder (a model, an
    adapter: writing there would change it); when an existing output is a symlink or not a
    regular file (a directory, a device such as /dev/null, a pipe); when an existing output
    directory is not a directory; when an output's folder (or the nearest existing one above it)
    cannot be written."""
    ins, outs, dirs = _named(inputs), _named(outputs), _named(directories)
    _check_aliases(ins, outs, dirs)
    for name, path in outs:
        _check_output_file(name, path)
    for name, folder in dirs:
        try:
            mode = folder.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise RealignError(f"{name} {folder} cannot be written ({exc.strerror})") from None
        if not stat.S_ISDIR(mode):
            raise RealignError(f"{name} {folder} exists and is not a directory: give a directory path or a new one")


def _check_aliases(ins: list[tuple[str, Path]], outs: list[tuple[str, Path]], dirs: list[tuple[str, Path]]) -> None:
    """No output is an input or another output, no input lies in an output directory, and
    nothing is written inside an input folder."""
    for i, (name, path) in enumerate(outs):
        for in_name, in_path in ins:
            if _same(path, in_path):
                raise RealignError(
                    f"{name} {path} is the same file as {in_name} {in_path}: the output would overwrite the input; "
                    f"give {name} another path"
                )
        for other_name, other in outs[:i]:
            if _same(path, other):
                raise RealignError(
                    f"{name} {path} is the same file as {other_name} {other}: one output would overwrite the other; "
                    "give each its own path"
                )
    for name, folder in dirs:
        for in_name, in_path in ins:
            if os.path.lexists(in_path) and _inside(in_path, folder):  # a hub id names no file here
                where = "is" if _same(in_path, folder) else "lies in"
                raise RealignError(
                    f"{in_name} {in_path} {where} {name} {folder}, which this command writes into: the output would "
                    "overwrite the input; move the input or write elsewhere"
                )
    for in_name, in_path in ins:
        if not in_path.is_dir():
            continue
        for name, path in [*dirs, *outs]:
            if _inside(path, in_path):
                raise RealignError(
                    f"{name} {path} lies in {in_name} {in_path}: writing there would change the input; "
                    f"give {name} a path outside it"
                )


def _check_output_file(name: str, path: Path) -> None:
    """An output file is new, or an existing regular file (not a link) in a writable folder."""
    if path.is_symlink():
        raise RealignError(
            f"{name} {path} is a symbolic link (to {os.readlink(path)}): writing would replace the link, "
            "not write through it; give the path of a regular file or a new one"
        )
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        _check_writable(name, path)
        return
    except NotADirectoryError:
        parent = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise RealignError(f"{name} {path} cannot be written: {parent} is not a directory") from None
    except OSError as exc:
        raise RealignError(f"{name} {path} cannot be written ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise RealignError(
            f"{name} {path} is {_kind(mode)}: outputs are written to a new file renamed into place, which "
            "would replace it; give the path of a regular file or a new one"
        )
    _check_writable(name, path)


# --------------------------------------------------------------------------- folder locks

LOCK_NAME = ".realign.lock"
#: the folders whose lock this process holds (real paths)
_HELD: set[str] = set()


class FolderBusy(RealignError):
    """Another process holds the lock of the output folder (:func:`folder_lock`)."""


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold the lock of output folder ``folder`` (created) while the block runs: one writer per
    run folder, so two commands never mix their outputs in it.

    The lock is ``fcntl.flock`` on ``FOLDER/.realign.lock``: the kernel frees it when its holder
    exits, however it dies, so a crash never leaves the folder locked. The file records the
    holder (pid, host, command, since when) for the one-line :class:`FolderBusy` a second
    process stops with, and is removed on release. A lock still held though the process it
    names is gone (this host; a forked child kept the file open) is taken over. Folders created
    for the lock and left empty (a command that failed) are removed with it. Nested holds in
    one process are free, and the helper processes of an ``accelerate launch`` (``RANK`` > 0)
    take none: their main process holds it."""
    key = os.path.realpath(folder)
    if key in _HELD or os.environ.get("RANK", "0") not in ("", "0"):
        yield
        return
    created = [p for p in (Path(key), *Path(key).parents) if not p.exists()]  # deepest first
    Path(key).mkdir(parents=True, exist_ok=True)
    path = Path(key) / LOCK_NAME
    fd = _acquire(path)
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        if _names(path, fd):
            path.unlink(missing_ok=True)
        os.close(fd)
        for empty in created:
            try:
                empty.rmdir()
            except OSError:  # not empty: the command wrote there
                break


def _acquire(path: Path) -> int:
    """Open and lock ``path`` (retrying when its holder released and removed it meanwhile, or
    died leaving it held), then record this process as the holder; returns the descriptor."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            pid = holder.get("pid")
            stale = holder.get("host") == _HOST and isinstance(pid, int) and not _alive(pid)
            if stale and _names(path, fd):
                path.unlink(missing_ok=True)
            os.close(fd)
            if stale:
                continue
            raise FolderBusy(_busy(path, holder)) from None
        if _names(path, fd):
            break
        os.close(fd)
    record = {"pid": os.getpid(), "host": _HOST, "command": _command()[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(record).encode("utf-8"))
    return fd


def _command() -> str:
    """This process's command line as typed: ``realign run x.yaml``, also for ``python -m realign``."""
    if not sys.argv:
        return "python"
    program = Path(sys.argv[0])
    return " ".join([program.parent.name if program.name == "__main__.py" else program.name, *sys.argv[1:]])


def _names(path: Path, fd: int) -> bool:
    """``path`` still names the file open as ``fd`` (not removed or replaced since it was opened)."""
    try:
        st, open_st = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (open_st.st_dev, open_st.st_ino)


def _holder(fd: int) -> dict:
    """The holder a lock file records ({} while its holder has not written it yet, or unreadable)."""
    try:
        value = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _busy(path: Path, holder: dict) -> str:
    who = (f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command')}) since {holder.get('since')}"
           if holder else f"a process that has not recorded itself in {path} yet")
    return (f"{path.parent} is in use by another realign command: {who}; wait for it to end, "
            "or give another output folder")
