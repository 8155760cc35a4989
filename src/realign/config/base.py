"""What every config model shares: :class:`StrictModel` (an unknown key, or a value set later
that does not validate, is an error) and the folder caches default to."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict


def default_cache_dir() -> Path:
    """``$REALIGN_CACHE``, else ``$XDG_CACHE_HOME/realign``, else ``~/.cache/realign``."""
    if os.environ.get("REALIGN_CACHE"):
        return Path(os.environ["REALIGN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "realign"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
