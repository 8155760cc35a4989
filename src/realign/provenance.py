"""What every result file carries besides its figures: versions, machine and time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from importlib import metadata

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
