"""The console entry point run in the test's own process, for tests of CLI errors and output."""

from __future__ import annotations

import sys

import pytest

from realign.cli import main


def realign(capsys, monkeypatch, *args) -> tuple[int, str]:
    """Run ``realign ARGS`` in this process: (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", ["realign", *map(str, args)])
    with pytest.raises(SystemExit) as exit:
        main()
    return exit.value.code, capsys.readouterr().err
