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


def refused(capsys, monkeypatch, args, *expect) -> str:
    """Run ``realign ARGS`` and check it refused as bad input: exit 2 and one ``error:`` line
    naming each of ``expect``; returns that line."""
    code, err = realign(capsys, monkeypatch, *args)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for part in expect:
        assert str(part) in err, err
    return err
