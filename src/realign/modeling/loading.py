"""Loading models, tokenizers and adapters (hub id or local path) onto a device, in a dtype.

Safe by default: weights are read from safetensors only (``use_safetensors=True``; pickled
``.bin`` checkpoints can run code when loaded), and code shipped with a model runs only when
``trust_remote_code=True`` is asked for. A model that cannot be loaded is one
:class:`RealignError` line, not a traceback (:mod:`.sources`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import JudgeError, RealignError
from .sources import check_source, is_local, load_error, suggest_adapter_folder

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(device: str = "auto") -> "torch.device":
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else as given
    (``"cpu"``, ``"cuda:1"``, ``"mps"``). An unavailable CUDA device is a RealignError."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise RealignError(f"device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RealignError(f"device {device!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
    return resolved


def resolve_dtype(dtype: str = "auto", device: "str | torch.device" = "cpu") -> "torch.dtype":
    """``"auto"`` -> float32 on CPU; on CUDA bfloat16 where supported, else float16.
    Otherwise one of "float32", "bfloat16", "float16"."""
    import torch

    if dtype == "auto":
        device = torch.device(device)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise RealignError(f"dtype {dtype!r}: expected 'auto' or one of {', '.join(_DTYPES)}")
    return getattr(torch, dtype)


def load_tokenizer(
    name_or_path: str | Path,
    *,
    trust_remote_code: bool = False,
    padding_side: str = "left",
) -> "PreTrainedTokenizerBase":
    """Load a tokenizer; pad token set to eos when it has none; left padding (for generation
    and last-position scoring) unless ``padding_side`` says otherwise."""
    from transformers import AutoTokenizer

    source = check_source(str(name_or_path), "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... here
        raise load_error(source, "tokenizer", exc) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise RealignError(f"tokenizer {str(name_or_path)!r}: has neither a pad token nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(
    name_or_path: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    use_safetensors: bool = True,
) -> "PreTrainedModel":
    """Load a causal LM onto ``device`` (see :func:`resolve_device`) in ``dtype`` (see
    :func:`resolve_dtype`), in eval mode. ``attn_implementation`` None lets transformers pick
    ("sdpa" where supported); "eager" is needed for forward-mode AD."""
    from transformers import AutoModelForCausalLM

    source = check_source(str(name_or_path), "model")
    target = resolve_device(device)
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(dtype, target),
        "trust_remote_code": trust_remote_code,
        "use_safetensors": use_safetensors,
        "device_map": {"": str(target)},
    }
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:
        if use_safetensors and is_local(source) and not any(Path(source).glob("*.safetensors")):
            raise RealignError(
                f"model {source!r}: no safetensors weights found; pickled checkpoints are refused by "
                "default (convert it, or pass use_safetensors=False only if you trust its origin)"
            ) from None
        raise load_error(source, "model", exc) from None
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        pad = getattr(model.config, "pad_token_id", None)
        generation.pad_token_id = pad if pad is not None else generation.eos_token_id
    return model.eval()


def load_for_inference(config, role: str) -> "PreTrainedModel":
    """The model of a judge, pairwise judge or oracle config (``model``, ``device``, ``dtype``,
    ``trust_remote_code``); a loading problem is a one-line JudgeError naming the role."""
    try:
        return load_causal_lm(
            config.model, device=config.device, dtype=config.dtype, trust_remote_code=config.trust_remote_code
        )
    except RealignError as exc:
        raise JudgeError(f"{role}: {exc}") from None


def attach_lora(model, r: int, alpha: int, targets: Sequence[str], seed: int, dropout: float = 0.0):
    """A fresh PEFT LoRA adapter (lora_B = 0, so the model is unchanged: θ = θ_ref)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise RealignError(f"LoRA targets {list(targets)}: {str(exc).splitlines()[0]}") from None


def load_adapter(model: "PreTrainedModel", adapter: str | Path, *, is_trainable: bool = False):
    """``model`` with the PEFT adapter ``adapter`` on it. As for models, only safetensors weights
    are loaded from a local folder (a pickled ``adapter_model.bin`` is refused, never unpickled);
    any failure is one RealignError line."""
    from peft import PeftModel

    source = check_source(str(adapter), "adapter")
    suggest_adapter_folder(source)
    if is_local(source) and not (Path(source) / "adapter_model.safetensors").is_file():
        raise RealignError(
            f"adapter {source!r}: no adapter_model.safetensors; pickled adapter weights are refused "
            "(convert it, or load it yourself only if you trust its origin)"
        )
    base = _adapter_base(source)
    loaded = str(getattr(model, "name_or_path", "") or "")
    if base and loaded and not _same_model(base, loaded):
        print(f"warning: adapter {source!r} was trained on {base!r} (its adapter_config.json), not on {loaded!r}; "
              "an adapter fits only the base model it was trained on", file=sys.stderr)
    try:
        return PeftModel.from_pretrained(model, source, is_trainable=is_trainable)
    except Exception as exc:  # peft raises ValueError, OSError, KeyError, ... here
        raise _adapter_error(source, base, loaded, exc) from None


def _adapter_base(source: str) -> str | None:
    """The base model a local adapter names (``base_model_name_or_path`` in its adapter_config.json)."""
    try:
        value = json.loads((Path(source) / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _same_model(a: str, b: str) -> bool:
    """Whether two names of a model (hub ids or paths) plausibly name one model: equal, or one
    folder when both are local, else the same last component (a hub id and a local copy named
    after it)."""
    if a == b:
        return True
    here = [Path(name).expanduser() for name in (a, b)]
    if all(path.exists() for path in here):
        return os.path.realpath(here[0]) == os.path.realpath(here[1])
    return Path(a.rstrip("/")).name == Path(b.rstrip("/")).name


#: how torch reports a tensor whose shape differs between a checkpoint and the model
_SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) "
                            r"from checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)")


def _adapter_error(source: str, base: str | None, loaded: str, exc: Exception) -> RealignError:
    """Why an adapter did not load, as one line: for an adapter of another base model, the first
    tensor whose shape differs (both shapes) and how many more do; else :func:`.sources.load_error`."""
    found = _SIZE_MISMATCH.findall(str(exc))
    if not found:
        return load_error(source, "adapter", exc)
    name, theirs, ours = found[0]
    more = f" (and {len(found) - 1} more tensors differ)" if len(found) > 1 else ""
    trained = f" (it names {base!r} in its adapter_config.json)" if base else ""
    return RealignError(
        f"adapter {source!r} does not fit model {loaded or '?'!r}: {name.removeprefix('base_model.model.')} is {theirs} in "
        f"the adapter but {ours} in the model{more}; an adapter loads only on the base model it was trained on{trained}"
    )
