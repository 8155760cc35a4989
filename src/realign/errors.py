"""Errors a user can cause. The CLI prints their message on one line, never a traceback."""

from __future__ import annotations

from pathlib import Path


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
    """A judge backend that cannot be reached or configured."""
