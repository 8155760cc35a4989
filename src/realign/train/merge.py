"""``realign merge``: a LoRA adapter folded into its base model."""

from __future__ import annotations

from pathlib import Path

from ..runs.files import check_output_paths, folder_lock
from ..modeling.loading import load_adapter, load_causal_lm, load_tokenizer


def merge(model: str, adapter: str, out: str | Path) -> Path:
    """Fold a LoRA adapter into its base model and save the result (safetensors) in folder
    ``out``, which must be neither input folder nor lie in or contain one."""
    out = Path(out)
    check_output_paths({"--model": model, "--adapter": adapter}, {}, {"--out": out})
    with folder_lock(out):
        base = load_causal_lm(model, device="cpu", dtype="float32")
        merged = load_adapter(base, adapter).merge_and_unload()
        merged.save_pretrained(str(out), safe_serialization=True)
        load_tokenizer(model).save_pretrained(str(out))
    return out
