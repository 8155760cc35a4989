"""Errors a user can cause. The CLI prints their message on one line, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: longest value an error message quotes; longer ones are cut in the middle
SHOWN_CHARS = 120


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, cut in the middle to about ``limit`` characters
    with the full length said (a 4 MB value must not become a 4 MB error line)."""
    text = repr(value) if not isinstance(value, str) or len(value) <= 4 * limit else repr(value[: 2 * limit] + value[-2 * limit:])
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, (str, bytes)) else f"{len(text):,} characters as written"
    head = (limit - 10) // 2
    return f"{text[:head]} … {text[-(limit - 10 - head):]} ({size})"


class RealignError(Exception):
    """An error caused by input or configuration; its message says what to fix."""


class DataError(RealignError):
    """A bad record in a data file, located by file, line (or index) and field."""

    def __init__(
        self,
        source: str | Path,
        message: str,
        *,
        line: int | None = None,
        index: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = str(source)
        self.line = line
        self.index = index
        self.field = field
        self.reason = message
        where = self.source
        if line is not None:
            where += f":{line}"
        elif index is not None:
            where += f" [record {index}]"
        if field is not None:
            where += f" field '{field}'"
        super().__init__(f"{where}: {message}")


class JudgeError(RealignError):
    """A judge backend that cannot be reached or configured, or a judgement that cannot be
    made. ``item``: the position, in the items the judge was given, of the one whose judgement
    failed (None when the error is not about one item); the caller, which knows the record
    behind each item, names it."""

    def __init__(self, message: str, *, item: int | None = None) -> None:
        super().__init__(message)
        self.item = item
