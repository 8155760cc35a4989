"""Persistent verdict cache (SQLite) shared by every judge backend.

Key: judge identity, policy hash, prompt and response. An interrupted triage resumes where it
stopped and a rerun makes no judge calls. Writes are committed in small groups, so a killed
process loses at most the last few uncommitted verdicts, never the database (SQLite's
journal keeps it consistent).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from ..errors import RealignError
from .base import JudgeItem, Verdict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    judge TEXT NOT NULL,
    policy TEXT NOT NULL,
    compliant INTEGER,
    p_compliant REAL,
    raw TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    generator TEXT NOT NULL,
    policy TEXT NOT NULL,
    text TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def cache_key(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


def _guarded(method):
    """SQLite errors of a cache operation as one line naming the cache file: a full disk is an
    OSError (ENOSPC, exit status 1), a damaged database a RealignError saying what to do."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if "full" in str(exc):
                raise OSError(errno.ENOSPC, f"No space left on device (verdict cache: {exc})", str(self.path)) from None
            raise RealignError(
                f"{self.path}: verdict cache is damaged ({exc}): delete it (or give another --cache) and rerun; "
                "its verdicts are judged again"
            ) from None

    return wrapper


def check_cache_file(path: Path) -> None:
    """A file at ``path`` that is not an SQLite database (a data file given as ``--cache`` by
    mistake) is refused with what it looks like, before SQLite says only "file is not a
    database". A missing or empty file becomes a new cache.

    The file is asked through SQLite, never opened and closed directly while it may be a
    database: closing any descriptor of a file drops every POSIX lock the process holds on it,
    including those of a cache this process has open — another process then takes itself for
    the last connection, checkpoints and deletes the write-ahead log under it, and the cache is
    damaged ("database disk image is malformed"). Its bytes are read only once SQLite has
    refused it, when no connection can hold it."""
    try:
        if path.stat().st_size == 0:
            return
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RealignError(f"{path}: cannot read the verdict cache ({exc.strerror or exc})") from None
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=OPEN_WAIT_S)
        try:
            probe.execute("PRAGMA schema_version").fetchone()
        finally:
            probe.close()
        return
    except sqlite3.DatabaseError as exc:
        if "not a database" not in str(exc):
            return  # locked, busy or unreadable now: opening the cache says what it is
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise RealignError(f"{path}: cannot read the verdict cache ({exc.strerror or exc})") from None
    text = head.decode("utf-8", errors="replace").lstrip()
    looks = "; it looks like JSON data: did you mean --data or --prompts?" if text[:1] in ("{", "[") else ""
    raise RealignError(
        f"{path} is not a verdict cache (an SQLite database){looks} (--cache names the SQLite file verdicts are kept "
        "in: give a new path, where one is created, or leave it out for the default)"
    )


#: longest wait for another process that holds a new cache's lock while opening it
OPEN_WAIT_S = 30.0


class VerdictCache:
    """SQLite-backed map (judge, policy, prompt, response) -> Verdict."""

    def __init__(self, path: str | Path, commit_every: int = 32) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_cache_file(self.path)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if "full" in str(exc):
                raise OSError(errno.ENOSPC, f"No space left on device (verdict cache: {exc})", str(self.path)) from None
            raise RealignError(f"{self.path}: cannot open verdict cache: {exc}") from None
        self._pending = 0
        self.commit_every = commit_every

    def _open(self) -> sqlite3.Connection:
        """Connect, switch to WAL and create the tables. Several processes may open one new cache
        at once (``accelerate launch``): switching a new database to WAL takes an exclusive lock
        that SQLite's busy timeout does not wait for, so "database is locked" is retried for up
        to :data:`OPEN_WAIT_S` seconds before it is an error."""
        deadline = time.monotonic() + OPEN_WAIT_S
        while True:
            db = sqlite3.connect(self.path, timeout=OPEN_WAIT_S)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @staticmethod
    def key(judge: str, policy: str, item: JudgeItem) -> str:
        return cache_key(judge, policy, item.prompt, item.response)

    @_guarded
    def get_many(self, judge: str, policy: str, items: Iterable[JudgeItem]) -> dict[int, Verdict]:
        """Cached verdicts by position in ``items``."""
        keys = [self.key(judge, policy, it) for it in items]
        found: dict[str, Verdict] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, compliant, p, raw in self._db.execute(
                f"SELECT key, compliant, p_compliant, raw FROM verdicts WHERE key IN ({marks})", chunk
            ):
                found[key] = Verdict(None if compliant is None else bool(compliant), p, raw)
        return {i: found[k] for i, k in enumerate(keys) if k in found}

    @_guarded
    def put(self, judge: str, policy: str, item: JudgeItem, verdict: Verdict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.key(judge, policy, item),
                judge,
                policy,
                None if verdict.compliant is None else int(verdict.compliant),
                verdict.p_compliant,
                verdict.raw,
                time.time(),
            ),
        )
        self._tick()

    @_guarded
    def get_generation(self, generator: str, policy: str, prompt: str) -> str | None:
        row = self._db.execute(
            "SELECT text FROM generations WHERE key = ?", (cache_key(generator, policy, prompt),)
        ).fetchone()
        return None if row is None else row[0]

    @_guarded
    def put_generation(self, generator: str, policy: str, prompt: str, text: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?)",
            (cache_key(generator, policy, prompt), generator, policy, text, time.time()),
        )
        self._tick()

    def _tick(self) -> None:
        self._pending += 1
        if self._pending >= self.commit_every:
            self.commit()

    @_guarded
    def commit(self) -> None:
        self._db.commit()
        self._pending = 0

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()

    def __enter__(self) -> "VerdictCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
