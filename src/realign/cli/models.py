"""The commands on the models a run trains: ``realign methods`` (the training methods there
are), ``realign merge`` (a LoRA adapter folded into its base model) and ``realign models
prepare`` (a packaged GGUF model made a trainable checkpoint). Registered on the ``realign``
app by :mod:`realign.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import HELP, QUIET


def methods() -> None:
    """List the registered training methods."""
    from ..train.methods import METHODS

    for name, m in METHODS.items():
        typer.echo(f"{name:<18} {m.description}")


def merge(
    model: str = typer.Option(..., help="Base model: hub id or local path."),
    adapter: str = typer.Option(..., help="PEFT adapter directory."),
    out: Path = typer.Option(..., help="Where the merged model is saved (safetensors)."),
) -> None:
    """Fold a LoRA adapter into its base model."""
    from ..train.merge import merge as merge_adapter

    typer.echo(f"merged -> {merge_adapter(model, adapter, out)}")


models_app = typer.Typer(help="Small real models shipped in packages.", no_args_is_help=True, **HELP)


@models_app.command("prepare")
def models_prepare(
    name: str = typer.Argument(..., help="Packaged model name, e.g. smollm2."),
    cache_dir: Optional[Path] = typer.Option(
        None, help="realign's cache folder; the checkpoint goes to CACHE_DIR/models/NAME (default cache: "
        "$REALIGN_CACHE, else ~/.cache/realign)."),
    quiet: bool = QUIET,
) -> None:
    """Turn a packaged GGUF model into a trainable safetensors checkpoint (once, offline).
    Prints only the checkpoint's path on stdout, so ``BASE=$(realign models prepare NAME)``
    captures it."""
    from ..modeling.packaged import prepare_packaged_model

    typer.echo(prepare_packaged_model(name, cache_dir, progress=not quiet))
