"""Data shipped with the package: example policies, example pairs, the synthetic world's files."""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).parent


def resource_path(relative: str) -> Path:
    """Absolute path of a packaged resource file."""
    return _ROOT / relative
