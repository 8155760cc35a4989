"""The ``realign`` command: one subcommand per stage. Every stage reads and writes plain
files, resumes after interruption, shows progress and writes its resolved config beside its
outputs. Errors a user can cause print one line (``error: ...``), never a traceback.

This module builds the app from the commands of :mod:`.stages` (the pipeline), :mod:`.judging`,
:mod:`.models` and :mod:`.data` (flags they share: :mod:`.options`) and holds the entry point,
which turns errors into one line and an exit status."""

from __future__ import annotations

import errno as errno_names
import sqlite3
import sys
from typing import Any

import typer

from ..errors import RealignError
from ..synth.cli import synth_app
from . import data, judging, models, stages
from .options import HELP

app = typer.Typer(
    name="realign",
    help="Re-align a language model to a changed policy from its old preference data (TRACE).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    **HELP,
)
# registered in the order `realign --help` lists them (typer lists the commands before the groups)
app.command()(stages.triage)
app.command()(stages.score)
app.command("train")(stages.train_cmd)
app.command()(models.merge)
app.command()(models.methods)
app.command("eval")(stages.eval_cmd)
app.command()(stages.report)
app.command()(judging.winrate)
app.command("run")(stages.run_cmd)
app.command()(stages.demo)
app.add_typer(judging.policy_app, name="policy")
app.add_typer(data.data_app, name="data")
app.add_typer(judging.judge_app, name="judge")
app.add_typer(synth_app, name="synth")
app.add_typer(models.models_app, name="models")


INTERRUPTED = "interrupted — rerun the same command to resume"
#: errors of the machine, not of what the user gave: exit status 1 (user errors: 2)
_ENVIRONMENT_ERRNOS = {"ENOSPC", "EDQUOT", "EIO", "ENOMEM", "EMFILE", "ENFILE", "EFBIG", "EAGAIN", "EBUSY", "ETXTBSY"}


def _interrupted(exc: BaseException) -> bool:
    """Was ``exc`` caused by Ctrl-C? Typer turns KeyboardInterrupt into ``Exit(130)`` before
    this entry point sees it, so the chain is searched."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def os_error_line(exc: OSError) -> tuple[str, int]:
    """An OSError as one line naming the file and the cause, and the exit status: 1 for a fault
    of the machine (disk full, I/O error), 2 for a path the user gave (a directory, no
    permission, a missing folder)."""
    name = errno_names.errorcode.get(exc.errno or 0, "")
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    cause = exc.strerror or str(exc) or type(exc).__name__
    hint = " (free some space and rerun the same command to resume)" if name in ("ENOSPC", "EDQUOT") else ""
    return f"{where + ': ' if where else ''}{cause}{hint}", 1 if name in _ENVIRONMENT_ERRNOS else 2


def _leave_process_group(clean: bool) -> None:
    """Under ``accelerate launch``: tear the processes' ``torch.distributed`` group down before
    the interpreter exits -- after a barrier when the command ended normally, so that no
    process leaves while another still talks to it -- instead of leaving it to the interpreter's
    exit, where a gloo group can abort a process ("terminate called without an active
    exception"). After an error, no barrier: the other processes may never reach it."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    if clean:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main() -> None:
    """Console entry point (:func:`_main`), then the process group's teardown under
    ``accelerate launch`` (:func:`_leave_process_group`)."""
    status: Any = 1
    try:
        _main()
        status = 0
    except SystemExit as exc:
        status = exc.code
        raise
    finally:
        _leave_process_group(clean=status in (0, None))


def _main() -> None:
    """Run the command: user errors become one line on stderr and exit status 2; faults of
    the machine (disk full) one line and exit status 1; Ctrl-C one line and exit status 130."""
    try:
        app()
    except RealignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130 and _interrupted(exc):
            print(INTERRUPTED, file=sys.stderr)
        raise
    except OSError as exc:
        line, status = os_error_line(exc)
        print(f"error: {line}", file=sys.stderr)
        sys.exit(status)
    except sqlite3.OperationalError as exc:  # a cache on a full disk ("database or disk is full")
        full = "full" in str(exc)
        print(f"error: cache database: {exc}" + (" (free some space and rerun the same command to resume)" if full else ""),
              file=sys.stderr)
        sys.exit(1 if full else 2)
